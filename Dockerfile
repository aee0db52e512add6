# Rampart: one image for API nodes (`serve`), workers (`worker`) and one-off commands
# (`migrate up`, `admin create`, `keys rotate`). Build: docker build -t rampart .
# The app declaration is the example chat's; COPY or mount your own and pass `--app <file>`.

# --- build: compile TypeScript and native addons (better-sqlite3, argon2) ------------------------
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Dependencies first (cached while only the sources change); no scripts: `prepare` needs the sources.
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild better-sqlite3 @node-rs/argon2 esbuild
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY docs ./docs
COPY examples ./examples
# The admin console (built by Vite into dist/admin) and the SDK it uses.
COPY admin ./admin
COPY sdk ./sdk
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: the compiled server, production dependencies, a non-root user ----------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8090 \
    RAMPART_DATA_DIR=/var/lib/rampart
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/docs ./docs
COPY --from=build /src/examples ./examples
# pg_dump and pg_restore for backups of PostgreSQL (Debian 12's client is 15: the server's major
# version or newer is needed; set RAMPART_PG_BIN_DIR to use another).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*
# The app file is compiled next to itself at start: /app/examples must be writable by the user.
RUN useradd --system --uid 10001 --home-dir /var/lib/rampart --create-home rampart \
 && chown -R rampart:rampart /app/examples /var/lib/rampart
USER rampart
VOLUME ["/var/lib/rampart"]
EXPOSE 8090
# Liveness only (the process answers); orchestrators use /readyz for traffic (see docs/deploy.md).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8090)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Node is PID 1 here: it handles SIGTERM itself (drain, then exit 0).
ENTRYPOINT ["node", "bin/rampart.js"]
CMD ["serve", "--app", "examples/chat/rampart.config.ts"]
