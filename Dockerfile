# Shop images, two targets (docker-compose.yml picks one per service):
#   service (the default): the four services, only what a service needs (pyproject's base
#     dependencies: no seeder, no Faker, rich or pgserver); pick the command at run time.
#   seeder: the service image plus the seeder and its extra ([seeder]: Faker, click, rich),
#     for `python -m seeder` and the storefront, whose console runs the seeder.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 shop

# Dependency layers: they change only when pyproject.toml does. Empty packages let pip
# resolve the project; the project itself is uninstalled again, its dependencies stay.
COPY pyproject.toml README.md ./
ARG PACKAGES="shopkit customers_service inventory_service sales_service reviews_service seeder storefront"

FROM base AS service-dependencies
RUN for p in $PACKAGES; do mkdir -p "$p" && touch "$p/__init__.py"; done \
    && pip install . \
    && pip uninstall -y shop \
    && rm -rf $PACKAGES

FROM base AS seeder-dependencies
RUN for p in $PACKAGES; do mkdir -p "$p" && touch "$p/__init__.py"; done \
    && pip install ".[seeder]" \
    && pip uninstall -y shop \
    && rm -rf $PACKAGES

# The seeder and the storefront: everything, with the [seeder] extra.
FROM seeder-dependencies AS seeder
COPY shopkit ./shopkit
COPY customers_service ./customers_service
COPY inventory_service ./inventory_service
COPY sales_service ./sales_service
COPY reviews_service ./reviews_service
COPY storefront ./storefront
COPY seeder ./seeder
RUN pip install --no-deps .
USER shop
CMD ["python", "-m", "seeder", "demo"]

# The services (the default target): no seeder code and none of its dependencies.
FROM service-dependencies AS service
COPY shopkit ./shopkit
COPY customers_service ./customers_service
COPY inventory_service ./inventory_service
COPY sales_service ./sales_service
COPY reviews_service ./reviews_service
COPY storefront ./storefront
RUN pip install --no-deps .
USER shop
EXPOSE 5000 5001 5002 5003 8080
CMD ["gunicorn", "-c", "python:shopkit.gunicorn_conf", "-b", "0.0.0.0:5000", "customers_service:create_app()"]
