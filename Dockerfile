# syntax=docker/dockerfile:1
# mcp-oidc-proxy container image.
#   docker build -t mcp-oidc-proxy .
#   docker run --rm --init -p 8080:8080 --env-file ./env mcp-oidc-proxy
#   docker run --rm -e AUTH_MODE=bypass mcp-oidc-proxy check-config
# --init (init: true in compose) reaps the orphaned grandchildren a stdio MCP server may leave
# (npx starting node, say): Node.js as PID 1 does not, and they would delay the shutdown.

# --- build: compile TypeScript to dist/ ---
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- production dependencies only ---
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- runtime ---
FROM node:24-slim
ENV NODE_ENV=production \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json LICENSE ./
COPY configs/config.example.yaml ./configs/config.example.yaml
USER node
EXPOSE 8080
# /health is 200 when the proxy, its MCP server (with servers:, at least one of them), its session
# store (and in oidc mode its identity provider) are healthy, 503 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SERVER_PORT||8080)+'/health').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]
# The proxy handles SIGTERM itself (drains for SHUTDOWN_TIMEOUT seconds); give `docker stop` more
# time than that (docker stop -t 30, or stop_grace_period in compose).
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve"]
