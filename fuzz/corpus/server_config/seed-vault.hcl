
ui = true
api_addr = "https://10.0.0.5:8200"
cluster_addr = "https://10.0.0.5:8201"
disable_mlock = true
log_level = "debug"
default_lease_ttl = "1h"
max_lease_ttl = "720h"

storage "lmdb" {
  path = "/srv/coffer/data"
  map_size = 4294967296
}

listener "tcp" {
  address = "0.0.0.0:8200"
  tls_cert_file = "/srv/coffer/tls/cert.pem"
  tls_key_file = "/srv/coffer/tls/key.pem"
  tls_min_version = "tls13"
}

listener "tcp" {
  address = "127.0.0.1:8210"
  tls_disable = 1
}

replication {
  logshipper_buffer_length = 2000
  logshipper_buffer_size = "16777216"
}
