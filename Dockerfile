# One image for every Shop service (and the seeder): pick the command at run time.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependency layer: changes only when pyproject.toml does.
COPY pyproject.toml README.md ./
RUN mkdir -p shopkit customers_service inventory_service sales_service reviews_service seeder storefront \
    && for p in shopkit customers_service inventory_service sales_service reviews_service seeder storefront; do \
         touch "$p/__init__.py"; done \
    && pip install . \
    && pip uninstall -y shop \
    && rm -rf shopkit customers_service inventory_service sales_service reviews_service seeder storefront

# Application layer.
COPY shopkit ./shopkit
COPY customers_service ./customers_service
COPY inventory_service ./inventory_service
COPY sales_service ./sales_service
COPY reviews_service ./reviews_service
COPY seeder ./seeder
COPY storefront ./storefront
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 shop
USER shop

EXPOSE 5000 5001 5002 5003 8080
CMD ["gunicorn", "-c", "python:shopkit.gunicorn_conf", "-b", "0.0.0.0:5000", "customers_service:create_app()"]
