# syntax=docker/dockerfile:1
# legacy-registry: the server image (docs/scale-out.md "Containers").
#
#   docker build -t legacy-registry .            # npm ci + tsc inside (needs the npm registry)
#   docker run -p 5000:5000 -v lr-data:/var/lib/legacy-registry legacy-registry
#
# With no configuration it is the embedded default (`serve`: index on SQLite + registry on the
# filesystem), everything under the volume /var/lib/legacy-registry. Scale-out roles take
# `serve --only registry|index` and a configuration file (compose.yml).
#
# APP_SOURCE=prebuilt packs a build made outside instead (the context then holds package.json,
# config_sample.yml, bin/, dist/src, dist/migrations and production node_modules; see
# test/e2e/container.test.ts): for builders without the npm registry.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG APP_SOURCE=build

# --- npm ci and the TypeScript build (sqlite3 compiles when no prebuilt binary can be fetched)
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json config_sample.yml ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY native ./native
COPY scripts/build-native.mjs ./scripts/
# tsc compiles what tsconfig includes; the image keeps the server (dist/src, dist/migrations)
RUN mkdir -p test bench campaigns \
 && npx tsc -p tsconfig.json \
 && node scripts/build-native.mjs \
 && npm prune --omit=dev --no-audit --no-fund \
 && mkdir -p /app/dist \
 && cp -r package.json config_sample.yml bin node_modules /app/ \
 && cp -r dist/src dist/migrations dist/native /app/dist/

# --- a build made outside, copied as is
FROM ${NODE_IMAGE} AS prebuilt
COPY package.json config_sample.yml /app/
COPY bin /app/bin
COPY dist/src /app/dist/src
COPY dist/migrations /app/dist/migrations
COPY dist/native /app/dist/native
COPY node_modules /app/node_modules

FROM ${APP_SOURCE} AS app

# --- the image
FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="legacy-registry" \
      org.opencontainers.image.description="Docker v1 registry + index server, bridged to the v2/OCI distribution API" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    STORAGE_PATH=/var/lib/legacy-registry \
    REGISTRY_HOST=0.0.0.0 \
    REGISTRY_PORT=5000
COPY --from=app /app /app
# the official image's unprivileged `node` user (uid 1000) owns only the data directory
RUN mkdir -p /var/lib/legacy-registry && chown node:node /var/lib/legacy-registry
USER node
WORKDIR /var/lib/legacy-registry
VOLUME ["/var/lib/legacy-registry"]
EXPOSE 5000
# /v1/_ping answers on every role (registry, index, both) without credentials
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.REGISTRY_PORT||5000)+'/v1/_ping').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/legacy-registry.cjs"]
CMD ["serve"]
