path "auth/token/lookup-self" {
  capabilities = ["read"]
}
