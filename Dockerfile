# Builds the bridge and engine binaries (and the frontend) for docker-compose.
FROM rust:1.85-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rustup target add wasm32-unknown-unknown \
    && cargo install trunk --locked --version 0.21.14 \
    && (cargo install wasm-bindgen-cli --locked --version 0.2.130 || cargo install wasm-bindgen-cli --version 0.2.130) \
    && npm install --prefix /opt/tools binaryen@132.0.0 \
    && cargo fetch && PATH=/opt/tools/node_modules/.bin:$PATH trunk build --release \
    && PATH=/opt/tools/node_modules/.bin:$PATH trunk build frontend/extra.html --release --dist dist/extra --public-url /extra/ \
    && cargo build --release -p bridge -p engine

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bridge /src/target/release/engine /usr/local/bin/
COPY --from=build /src/dist /srv/dist
ENV STATIC_DIR=/srv/dist BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["bridge"]
