
# Applications read their own secrets.
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}

path "secret/+/team/+" {
  capabilities = ["create", "update", "patch"]
}

path "sys/policies/acl/*" {
  capabilities = ["sudo", "read"]
}

path "secret/data/app/admin" {
  capabilities = ["deny"]
}
