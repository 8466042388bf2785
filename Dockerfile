# nwfilter-operator: one image for the controller (runs as the non-root `node` user) and the agent
# (the DaemonSet runs it as root, only to open the host's libvirt socket).
# Base images are pinned by tag; pin them by digest in your registry mirror for reproducible builds.
# Node.js 24 is the supported LTS line (Node 20 reached end of life on 2026-04-30); the project's
# tests also run on it (hack/test.sh). hack/image-build.sh builds this file without a Docker engine
# and checks that this default is the version pinned in hack/versions.sh.
ARG NODE_VERSION=24.22.3

FROM node:${NODE_VERSION}-bookworm-slim AS build
# Behind a proxy or mirror: --build-arg NPM_REGISTRY=<url> picks the registry, and an extra CA
# certificate bundle (a TLS-inspecting proxy's) is passed as the secret npm_ca, e.g.
# --secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt; neither ends up in an image layer.
ARG NPM_REGISTRY=
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm_ca \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --no-audit --no-fund ${NPM_REGISTRY:+--registry "$NPM_REGISTRY"}
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim AS deps
ARG NPM_REGISTRY=
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm_ca \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --omit=dev --no-audit --no-fund ${NPM_REGISTRY:+--registry "$NPM_REGISTRY"} && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
LABEL org.opencontainers.image.title="nwfilter-operator" \
      org.opencontainers.image.description="Declarative libvirt nwfilter firewalls for VMs, managed from Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# The agent keeps the kernel IP sets of address groups with the ipset tool (src/netfilter/ipset.ts);
# netbase brings /etc/protocols, without which ipset cannot read "tcp:22" (measured on the real node).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ipset netbase \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY crds ./crds
COPY examples ./examples
USER node
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--help"]
