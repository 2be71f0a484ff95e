-- One login role per service, owning only its own schema (run once, as a superuser,
-- on the shop database). psql variables: customers_password, inventory_password,
-- sales_password, reviews_password. Used by the postgres container's init step
-- (shopkit/sql/init-roles.sh) and by the tests that check the isolation.
\set ON_ERROR_STOP on

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r.name, r.password)
FROM (VALUES
    ('customers_svc', :'customers_password'),
    ('inventory_svc', :'inventory_password'),
    ('sales_svc', :'sales_password'),
    ('reviews_svc', :'reviews_password')
) AS r(name, password)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name)
\gexec

GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO customers_svc, inventory_svc, sales_svc, reviews_svc;

CREATE SCHEMA IF NOT EXISTS customers AUTHORIZATION customers_svc;
CREATE SCHEMA IF NOT EXISTS inventory AUTHORIZATION inventory_svc;
CREATE SCHEMA IF NOT EXISTS sales AUTHORIZATION sales_svc;
CREATE SCHEMA IF NOT EXISTS reviews AUTHORIZATION reviews_svc;

-- Nobody else may even look inside a service's schema.
REVOKE ALL ON SCHEMA customers, inventory, sales, reviews FROM PUBLIC;
