-- One login role per service, owning only its own schema (run once, as a superuser,
-- on the shop database). psql variables: customers_password, inventory_password,
-- sales_password, reviews_password, notifications_password. Used by the postgres container's init step
-- (devstack/sql/init-roles.sh) and by the tests that check the isolation.
\set ON_ERROR_STOP on
-- Several processes may run this at once (gunicorn workers joining the embedded server).
SELECT pg_advisory_lock(hashtext('shop-create-roles'));

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r.name, r.password)
FROM (VALUES
    ('customers_svc', :'customers_password'),
    ('inventory_svc', :'inventory_password'),
    ('sales_svc', :'sales_password'),
    ('reviews_svc', :'reviews_password'),
    ('notifications_svc', :'notifications_password')
) AS r(name, password)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name)
\gexec

GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO customers_svc, inventory_svc, sales_svc, reviews_svc,
    notifications_svc;

CREATE SCHEMA IF NOT EXISTS customers AUTHORIZATION customers_svc;
CREATE SCHEMA IF NOT EXISTS inventory AUTHORIZATION inventory_svc;
CREATE SCHEMA IF NOT EXISTS sales AUTHORIZATION sales_svc;
CREATE SCHEMA IF NOT EXISTS reviews AUTHORIZATION reviews_svc;
CREATE SCHEMA IF NOT EXISTS notifications AUTHORIZATION notifications_svc;

-- Nobody else may even look inside a service's schema.
REVOKE ALL ON SCHEMA customers, inventory, sales, reviews, notifications FROM PUBLIC;

-- A database made before these roles existed (an old `make run` data directory): hand each
-- service's schema and tables to its role.
DO $$
DECLARE
    svc text;
    tbl record;
BEGIN
    FOREACH svc IN ARRAY ARRAY['customers', 'inventory', 'sales', 'reviews', 'notifications'] LOOP
        IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = svc)
                <> svc || '_svc' THEN
            EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc, svc || '_svc');
            FOR tbl IN SELECT c.oid::regclass AS name FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = svc AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
                EXECUTE format('ALTER TABLE %s OWNER TO %I', tbl.name, svc || '_svc');
            END LOOP;
        END IF;
    END LOOP;
END $$;
