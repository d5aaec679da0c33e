#!/usr/bin/env bash
# The same agent host as docker-compose.yml, with plain `docker run`
# (the shape of the Portainer agent's own install line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

docker volume create container-upgrader-state
docker run -d --name container-upgrader --restart=unless-stopped \
  --network host \
  -v /var/run/docker.sock:/var/run/docker.sock \
  -v container-upgrader-state:/var/lib/container-upgrader \
  -v "$here":/etc/container-upgrader:ro \
  registry.local:5000/container-upgrader:1.0.0

docker run -d --name app --restart=unless-stopped \
  -v app-data:/data \
  registry.local:5000/app:1.4.2

# What the controller did, from its state volume:
#   docker exec container-upgrader container-upgrader status
