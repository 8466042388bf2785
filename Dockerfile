# nwfilter-operator: one image for the controller (runs as the non-root `node` user) and the agent
# (the DaemonSet runs it as root, only to open the host's libvirt socket).
# Base images are pinned by tag; pin them by digest in your registry mirror for reproducible builds.

FROM node:20.19-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20.19-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20.19-bookworm-slim
LABEL org.opencontainers.image.title="nwfilter-operator" \
      org.opencontainers.image.description="Declarative libvirt nwfilter firewalls for VMs, managed from Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY crds ./crds
COPY examples ./examples
USER node
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--help"]
