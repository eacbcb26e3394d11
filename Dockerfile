FROM node:20-bookworm-slim
WORKDIR /app
COPY . .
RUN npm ci && npm cache clean --force
ENV WARREN_HOST=0.0.0.0
EXPOSE 4000
USER node
CMD ["node", "packages/cli/bin/warren.js", "serve"]
