// Streams an existing AKS cluster's audit logs to the forwarder's event hub.
// Deployed into the cluster's resource group (see the module's scope in main.bicep).

@description('Name of the existing AKS cluster in this resource group.')
param aksClusterName string

@description('The event hub to stream to.')
param eventHubName string

@description('Resource id of a namespace authorization rule with Send rights.')
param eventHubAuthorizationRuleId string

@description('Also stream kube-audit (includes get and list: far more volume) besides kube-audit-admin.')
param includeKubeAudit bool = false

resource cluster 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: aksClusterName
}

resource auditToEventHub 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'aks-audit-forwarder'
  scope: cluster
  properties: {
    eventHubName: eventHubName
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    logs: [
      {
        category: 'kube-audit-admin'
        enabled: true
      }
      {
        category: 'kube-audit'
        enabled: includeKubeAudit
      }
    ]
  }
}

@description('Resource id of the diagnostic setting.')
output diagnosticSettingId string = auditToEventHub.id
