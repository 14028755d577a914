# ImagePod images: the API (the default target) and the node agent (`--target agent`).
#
#   docker build -t imagepod-api .
#   docker build --target agent -t imagepod-agent .
#
# Both run the compiled build (`npm run build`: dist/) on Node with production dependencies only.
# NODE_IMAGE may name another Debian-based Node 20 image (a mirror, a pinned digest).
ARG NODE_IMAGE=node:20-bookworm-slim

# ── build: every dependency, then tsc to dist/ and the dashboard ─────────────────────────────
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# The sources (.dockerignore lets in only what the images need), in one layer.
COPY . .
RUN npm run build

# ── production dependencies only ─────────────────────────────────────────────────────────────
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# TypeScript comes along as an optional peer of valibot (@bull-board's); nothing loads it at runtime.
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/typescript node_modules/@typescript node_modules/.bin/tsc \
 && npm cache clean --force

# ── shared runtime layout ────────────────────────────────────────────────────────────────────
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY bin bin
COPY scripts/healthcheck.mjs scripts/

# ── the agent: talks to the host's Docker engine through its socket ──────────────────────────
# Run it with /var/run/docker.sock mounted. It runs as root here because the socket belongs to
# root and the host's `docker` group (whose GID differs between hosts); to run it as another user,
# give that user the socket's group (compose: `user: "1000:1000"` and
# `group_add: ["<stat -c %g /var/run/docker.sock>"]`). Access to the socket is root on the host
# either way. With `--gpus all` (or compose's GPU reservation) the NVIDIA container toolkit mounts
# the host's nvidia-smi and driver libraries in; `utility` is all the agent needs (it only asks
# nvidia-smi); jobs get their GPUs from the engine, not from this container. Its state
# (identity.json: the node's id and key) lives in /var/lib/imagepod-agent: keep it on a volume.
FROM runtime AS agent
ENV IMAGEPOD_AGENT_STATE_DIR=/var/lib/imagepod-agent \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
RUN mkdir -p /var/lib/imagepod-agent
VOLUME /var/lib/imagepod-agent
USER 0:0
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["node", "scripts/healthcheck.mjs", "agent"]
# SIGTERM: stops claiming, lets running jobs finish for IMAGEPOD_SHUTDOWN_GRACE_MS (60 s), hands
# the rest back; give the container a longer stop timeout than that.
STOPSIGNAL SIGTERM
CMD ["node", "dist/agent/main.js"]

# ── the API (default target) ─────────────────────────────────────────────────────────────────
FROM runtime AS api
# The official images' unprivileged `node` user, by number so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["node", "scripts/healthcheck.mjs", "api"]
# Node runs as PID 1 itself: src/main.ts closes the server and Redis on SIGTERM and SIGINT.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
