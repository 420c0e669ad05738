// Streams an existing AKS cluster's audit logs to the forwarder's event hub and, when an
// account is given, also archives them to a storage account (for backfill).
// Deployed into the cluster's resource group and subscription (see the module's scope in
// main.bicep). The event hub must be in the cluster's region.

@description('Name of the existing AKS cluster in this resource group.')
param aksClusterName string

@description('Name of the diagnostic setting: unique per forwarder, so several forwarders (or other tools) can stream the same cluster.')
param diagnosticSettingName string

@description('The event hub to stream to.')
param eventHubName string

@description('Resource id of a namespace authorization rule with Send rights.')
param eventHubAuthorizationRuleId string

@description('The one audit category streamed. kube-audit is a superset of kube-audit-admin: streaming both would send every mutating Event twice.')
@allowed([
  'kube-audit-admin'
  'kube-audit'
])
param auditCategory string = 'kube-audit-admin'

@description('Resource id of a storage account that also receives the category (PT1H.json blobs in insights-logs-<category>). Empty: the event hub only.')
param archiveStorageAccountId string = ''

resource cluster 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: aksClusterName
}

resource auditToEventHub 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: diagnosticSettingName
  scope: cluster
  properties: {
    eventHubName: eventHubName
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    storageAccountId: empty(archiveStorageAccountId) ? null : archiveStorageAccountId
    logs: [
      {
        category: auditCategory
        enabled: true
      }
    ]
  }
}

@description('Resource id of the diagnostic setting.')
output diagnosticSettingId string = auditToEventHub.id
