FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npm ci && npm run build && npm prune --omit=dev
USER node
ENTRYPOINT ["node", "bin/nats-backup.js"]
CMD ["serve"]
