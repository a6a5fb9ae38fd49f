#!/usr/bin/env bash
# Creates NATS's certificates for a cluster without cert-manager: the same
# Secrets k8s/base/nats-tls.yaml has cert-manager issue.
#
#   parley-nats-server          the NATS server's certificate for clients
#   parley-nats-routes          the certificate NATS nodes present to each
#                               other (a CA of its own)
#   parley-nats-<deployable>    each deployable's client certificate, subject
#                               CN=<deployable>,O=parley = its NATS user
#                               (gateway auth presence messaging file
#                               media-relay rendezvous)
#
# each with tls.crt, tls.key and ca.crt, as cert-manager writes them.
#
# usage: deploy/nats-certs.sh DIR [NAMESPACE]
#   Writes the CAs, keys and certificates under DIR (keep the *-ca.key files
#   safe, or delete them and run this again to rotate everything) and the
#   Secrets as DIR/secrets.yaml; apply them, then drop nats-tls.yaml from
#   the kustomization's resources:
#     kubectl apply -f DIR/secrets.yaml
#   NAMESPACE (default parley) goes into the Secrets and the server's DNS
#   names; the gateway's and the rendezvous's Secrets go into EDGE_NAMESPACE
#   (default parley-edge), where those two run. Certificates last 825 days: run it again before then and restart
#   the NATS pods (or let the reloader pick the files up) and the services.
# Needs: openssl, base64.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit $(($# < 1 ? 2 : 0))
fi
dir=$1
ns=${2:-parley}
edge_ns=${EDGE_NAMESPACE:-parley-edge}
days=825
deployables=(gateway auth presence messaging file media-relay rendezvous)

mkdir -p "$dir"
cd "$dir"
umask 077

# ca NAME: a self-signed CA (NAME-ca.crt, NAME-ca.key), kept if it exists.
ca() {
	local name=$1
	if [[ ! -f $name-ca.key ]]; then
		openssl ecparam -name prime256v1 -genkey -noout -out "$name-ca.key"
		openssl req -x509 -new -key "$name-ca.key" -sha256 -days 3650 -subj "/CN=$name-ca" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
			-out "$name-ca.crt"
	fi
}

# issue CA NAME SUBJECT EXTKEYUSAGE [SAN]: NAME/tls.key, tls.crt, ca.crt.
issue() {
	local ca=$1 name=$2 subj=$3 eku=$4 san=${5:-}
	mkdir -p "$name"
	openssl ecparam -name prime256v1 -genkey -noout -out "$name/tls.key"
	openssl req -new -key "$name/tls.key" -subj "$subj" -out "$name/tls.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		if [[ -n $san ]]; then echo "subjectAltName=$san"; fi
	} >"$name/ext.cnf"
	openssl x509 -req -in "$name/tls.csr" -CA "$ca-ca.crt" -CAkey "$ca-ca.key" -CAcreateserial \
		-days "$days" -sha256 -extfile "$name/ext.cnf" -out "$name/tls.crt" 2>/dev/null
	cp "$ca-ca.crt" "$name/ca.crt"
	rm -f "$name/tls.csr" "$name/ext.cnf"
}

ca parley-internal
ca parley-nats-routes

headless="DNS:*.nats-headless,DNS:*.nats-headless.$ns.svc,DNS:*.nats-headless.$ns.svc.cluster.local"
issue parley-internal parley-nats-server "/CN=nats" serverAuth \
	"DNS:nats,DNS:nats.$ns,DNS:nats.$ns.svc,DNS:nats.$ns.svc.cluster.local,$headless"
issue parley-nats-routes parley-nats-routes "/CN=nats-route" serverAuth,clientAuth "$headless"
for d in "${deployables[@]}"; do
	# openssl writes the subject's RDNs in the order given: O first, so the
	# DN reads CN=<d>,O=parley (RFC 2253 order), as cert-manager's does.
	issue parley-internal "parley-nats-$d" "/O=parley/CN=$d" clientAuth
done

b64() { base64 <"$1" | tr -d '\n'; }
{
	for s in parley-nats-server parley-nats-routes "${deployables[@]/#/parley-nats-}"; do
		sns=$ns
		case $s in parley-nats-gateway | parley-nats-rendezvous) sns=$edge_ns ;; esac
		cat <<EOF
---
apiVersion: v1
kind: Secret
metadata:
  name: $s
  namespace: $sns
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$s/tls.crt")
  tls.key: $(b64 "$s/tls.key")
  ca.crt: $(b64 "$s/ca.crt")
EOF
	done
} >secrets.yaml
echo "wrote $dir/secrets.yaml: kubectl apply -f $dir/secrets.yaml"
