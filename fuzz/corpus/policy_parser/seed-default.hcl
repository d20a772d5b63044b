# Lets a token look up its own properties.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Lets a token renew and revoke itself.
path "auth/token/renew-self" {
    capabilities = ["update"]
}

path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Lets a token ask which capabilities it has on a path.
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Lets a token read its own identity entity.
path "identity/entity/id/{{identity.entity.id}}" {
    capabilities = ["read"]
}

path "identity/entity/name/{{identity.entity.name}}" {
    capabilities = ["read"]
}

# Lets the web UI read the token's resultant ACL.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Lets a token renew and look up its leases.
path "sys/leases/renew" {
    capabilities = ["update"]
}

path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Gives each token full use of its own cubbyhole.
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Lets a token wrap, look up and unwrap responses.
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Lets a token use the hashing tool.
path "sys/tools/hash" {
    capabilities = ["update"]
}

path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Lets a token take part in the OIDC authorization flow.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
