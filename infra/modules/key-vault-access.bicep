// Lets the forwarder's identity read secrets from an existing Key Vault, so app settings can be
// Key Vault references (@Microsoft.KeyVault(SecretUri=...)). Deployed into the vault's resource
// group. The vault must use the Azure RBAC permission model.

@description('Name of the existing Key Vault in this resource group.')
param keyVaultName string

@description('Principal (object) id of the forwarder\'s user-assigned identity.')
param principalId string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Key Vault Secrets User: read secret values, nothing else; the platform resolves the app's Key
// Vault references with this identity (keyVaultReferenceIdentity on the site).
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Resource id of the role assignment.')
output roleAssignmentId string = secretsUser.id
