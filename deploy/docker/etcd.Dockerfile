# etcd for the compose cluster, from Debian's packages (etcd 3.4, with
# etcdctl), so that it builds wherever the relais image builds: no registry
# but Debian's archive is needed. Any etcd 3.4+ image serves as well; see
# deploy/README.md (RELAIS_ETCD_IMAGE).
#
#   docker build -f deploy/docker/etcd.Dockerfile -t relais-etcd:bookworm deploy/docker
ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
# policy-rc.d: the package's init script must not try to start etcd here.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && mkdir -p /var/lib/etcd && chown etcd:etcd /var/lib/etcd && chmod 700 /var/lib/etcd
USER etcd
EXPOSE 2379 2380
CMD ["etcd"]
