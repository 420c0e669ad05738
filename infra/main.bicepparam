using './main.bicep'

param appName = 'aks-audit-fwd-demo'
param aksClusterName = 'aks-prod-weu'
param aksResourceGroup = 'rg-aks-prod-weu'
param auditCategory = 'kube-audit-admin'
param integrationSubnetId = '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks-prod-weu/providers/Microsoft.Network/virtualNetworks/vnet-aks/subnets/snet-functions'
param auditWebhookUrl = 'http://10.240.0.100:7765/k8s_audit'
param instanceMemoryMB = 2048
param partitionCount = 4
param messageRetentionInDays = 7
