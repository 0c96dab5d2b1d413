FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npm ci && npm run build && npm prune --omit=dev
USER node
# A larger young generation: chunks are short-lived 256 KiB buffers, and the default one makes
# the collector run every few chunks (about a fifth of the CPU of a backup or restore).
ENTRYPOINT ["node", "--max-semi-space-size=16", "bin/nats-backup.js"]
CMD ["serve"]
