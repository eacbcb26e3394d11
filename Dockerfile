# Warren's image: `docker build -t warren .` (the last stage, `gateway`).
# docker-compose.yml also builds the `example-app` stage: the app behind the gateway.
#
# Each stage copies the package manifests first and installs from them, then
# the sources: a change to the sources reuses the cached `npm ci` layer.
# test/stack.test.ts checks this file; test/stack-run.test.ts replays the
# final stages' COPY and RUN outside Docker and runs the gateway (and the
# HEALTHCHECK) from there.

# 1. Build: every dependency (TypeScript), then the packages the gateway runs.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY packages/protocol/package.json packages/protocol/
COPY packages/producer/package.json packages/producer/
COPY packages/gateway/package.json packages/gateway/
COPY packages/cli/package.json packages/cli/
COPY packages/client/package.json packages/client/
# --ignore-scripts: the root's `prepare` builds, and the sources are not here yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.base.json ./
COPY packages/ packages/
# The CLI's project references build protocol, producer and gateway first.
RUN npx tsc -b packages/cli

# 2. Runtime: production dependencies only, the built JavaScript, no compiler,
#    no sources, no tests; owned by root and run as the unprivileged `node`.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/protocol/package.json packages/protocol/
COPY packages/producer/package.json packages/producer/
COPY packages/gateway/package.json packages/gateway/
COPY packages/cli/package.json packages/cli/
COPY packages/client/package.json packages/client/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/packages/protocol/dist packages/protocol/dist
COPY --from=build /src/packages/producer/dist packages/producer/dist
COPY --from=build /src/packages/gateway/dist packages/gateway/dist
COPY --from=build /src/packages/cli/dist packages/cli/dist
COPY packages/cli/bin packages/cli/bin
USER node

# 3. The example application behind the gateway in docker-compose.yml
#    (examples/app-in-front/app.mjs; it publishes with @warren/producer).
FROM runtime AS example-app
COPY examples/app-in-front/ examples/app-in-front/
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
CMD ["node", "examples/app-in-front/app.mjs"]

# 4. The gateway (the default stage). SIGTERM drains (docs/operations.md,
#    "Graceful drain"); give the container a stop grace period longer than
#    --shutdown-timeout. The health check asks the liveness probe only:
#    RabbitMQ being away makes the gateway not ready, not unhealthy.
FROM runtime AS gateway
ENV WARREN_HOST=0.0.0.0
# 4000: clients; 9464: Prometheus metrics when WARREN_METRICS_PORT=9464 (off by default).
EXPOSE 4000 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.WARREN_PORT || 4000) + '/_warren/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "packages/cli/bin/warren.js", "serve"]
