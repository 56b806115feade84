CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL, in_stock BOOLEAN NOT NULL);
INSERT INTO products VALUES (1, 'Espresso beans', 'coffee', 12.5, 1), (2, 'Filter papers', 'coffee', 3.2, 1), (3, 'Green tea', 'tea', 6.0, 0), (4, 'Moka pot', 'coffee', 28.0, 1), (5, 'Chai blend', 'tea', 7.75, 1);
