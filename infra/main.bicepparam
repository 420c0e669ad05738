using './main.bicep'

// An example: copy this file and set your own values. Every parameter is described in
// docs/deployment.md#parameters. Credentials are better passed as Key Vault references
// (with keyVaultName), or on the command line: scripts/deploy.sh <rg> <file> name=value.

param appName = 'aks-audit-fwd-demo'
param aksClusterName = 'aks-prod-weu'
param aksResourceGroup = 'rg-aks-prod-weu'
param auditCategory = 'kube-audit-admin'
param integrationSubnetId = '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks-prod-weu/providers/Microsoft.Network/virtualNetworks/vnet-aks/subnets/snet-functions'
param auditWebhookUrl = 'http://10.240.0.100:7765/k8s_audit'
param instanceMemoryMB = 2048
param partitionCount = 4
param messageRetentionInDays = 7
param eventHubThroughputUnits = 1
param eventHubAutoInflate = true
param eventHubMaximumThroughputUnits = 4
param alertEmail = 'platform-oncall@example.com'

// Optional:
// param keyVaultName = 'kv-aks-audit'
// param auditWebhookBearerToken = '@Microsoft.KeyVault(SecretUri=https://kv-aks-audit.vault.azure.net/secrets/audit-token)'
// param privateEndpointSubnetId = '/subscriptions/.../virtualNetworks/vnet-aks/subnets/snet-private-endpoints'
// param location = 'northeurope'        // the app's region, when the cluster's lacks Flex custom
// param auditArchiveStorageAccountId = '/subscriptions/.../storageAccounts/stauditarchive'   // also archive, for backfill
