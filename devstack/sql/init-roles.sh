#!/bin/sh
# postgres image init step (/docker-entrypoint-initdb.d): create the per-service roles.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v DBNAME="$POSTGRES_DB" \
  -v customers_password="${CUSTOMERS_DB_PASSWORD:-customers}" \
  -v inventory_password="${INVENTORY_DB_PASSWORD:-inventory}" \
  -v sales_password="${SALES_DB_PASSWORD:-sales}" \
  -v reviews_password="${REVIEWS_DB_PASSWORD:-reviews}" \
  -v notifications_password="${NOTIFICATIONS_DB_PASSWORD:-notifications}" \
  -f /shop-sql/create_roles.sql
