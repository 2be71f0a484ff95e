# Shop images, two targets (docker-compose.yml picks one per service):
#   service (the default): the four services, only what a service needs (pyproject's base
#     dependencies: no seeder, no Faker, rich or pgserver); pick the command at run time.
#   seeder: the service image plus the seeder and its extra ([seeder]: Faker, click, rich),
#     for `python -m seeder` and the storefront, whose console runs the seeder.
ARG PACKAGES="shopkit customers_service inventory_service sales_service reviews_service seeder storefront"

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

FROM base AS service-dependencies
ARG PACKAGES
RUN for p in $PACKAGES; do mkdir -p "$p" && touch "$p/__init__.py"; done \
    && pip install . \
    && pip uninstall -y shop \
    && rm -rf $PACKAGES

# The same plus the [seeder] extra (only Faker, click and rich are added).
FROM service-dependencies AS seeder-dependencies
ARG PACKAGES
RUN for p in $PACKAGES; do mkdir -p "$p" && touch "$p/__init__.py"; done \
    && pip install ".[seeder]" \
    && pip uninstall -y shop \
    && rm -rf $PACKAGES

# The code, sorted once: what every image runs, and what only the seeder image adds.
FROM base AS source
COPY shopkit /src/service/shopkit
COPY customers_service /src/service/customers_service
COPY inventory_service /src/service/inventory_service
COPY sales_service /src/service/sales_service
COPY reviews_service /src/service/reviews_service
COPY notifications_service /src/service/notifications_service
COPY storefront /src/seeder/storefront
COPY seeder /src/seeder/seeder

# The seeder and the storefront (its console runs the seeder): everything, with [seeder].
FROM seeder-dependencies AS seeder
COPY --from=source /src/service/ /src/seeder/ ./
RUN pip install --no-deps .
USER shop
EXPOSE 8080
CMD ["python", "-m", "seeder", "demo"]

# The services (the default target): no seeder or storefront code, none of their packages.
FROM service-dependencies AS service
COPY --from=source /src/service/ ./
RUN pip install --no-deps .
USER shop
EXPOSE 5000 5001 5002 5003
CMD ["gunicorn", "-c", "python:shopkit.gunicorn_conf", "-b", "0.0.0.0:5000", "customers_service:create_app()"]
