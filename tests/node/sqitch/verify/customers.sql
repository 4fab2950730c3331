SELECT id, name FROM customers WHERE FALSE;
