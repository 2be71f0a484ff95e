-- One sale as the single-app baseline does it, in one transaction (bench/monolith.py).
-- Run by bench/run.py as:  pgbench -n -f bench/pgbench_sale.sql -c 16 -j 2 -T 20
--                                  -D products=N -D wallets=M
-- Stock and funds are ample, so every transaction completes (a refusal would abort the client).
\set product random(1, :products)
\set wallet random(1, :wallets)
BEGIN;
UPDATE bench_monolith.products SET stock = stock - 1
  WHERE id = :product AND stock >= 1 RETURNING price \gset
UPDATE bench_monolith.wallets SET balance = balance - :price
  WHERE id = :wallet AND balance >= :price RETURNING customer_id \gset
INSERT INTO bench_monolith.sales (id, customer_id, product_id, quantity, unit_price, total, status)
  VALUES (gen_random_uuid(), :customer_id, :product, 1, :price, :price, 'completed');
END;
