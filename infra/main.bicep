// aks-audit-forwarder: everything one resource group needs to forward an AKS cluster's audit
// logs from an Event Hub to an audit webhook with a Flex Consumption function app.
// Every connection uses one user-assigned managed identity; no keys or connection strings are
// stored in app settings.

targetScope = 'resourceGroup'

@description('Base name of the function app and the prefix of the other resources (letters, digits, hyphens).')
@minLength(3)
@maxLength(40)
param appName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {
  workload: 'aks-audit-forwarder'
}

@description('Flex Consumption instance memory in MB (512, 2048 or 4096). An invocation peaks at about twice its body; 2048 fits the largest default batch several times over.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to (40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Resource id of an existing subnet delegated to Microsoft.App/environments, for VNet integration (the audit service is usually an internal load balancer in the cluster VNet). Empty: no VNet integration.')
param integrationSubnetId string = ''

@description('Event hub partitions: the most function instances that consume in parallel.')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days the hub keeps events: the longest receiver outage survived without loss.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Name of the existing AKS cluster whose audit logs are forwarded. Empty: no diagnostic setting is created.')
param aksClusterName string = ''

@description('Resource group of that cluster (may differ from this one).')
param aksResourceGroup string = resourceGroup().name

@description('Also stream the kube-audit category (every request, get and list included: much more volume). kube-audit-admin is always streamed.')
param includeKubeAudit bool = false

@description('AUDIT_WEBHOOK_URL: where the audit Events go, e.g. http://10.240.0.100:7765/k8s_audit. Secure because it may carry credentials. Leave empty only when auditRoutes is set.')
@secure()
param auditWebhookUrl string = ''

@description('AUDIT_WEBHOOK_BEARER_TOKEN: sent as Authorization: Bearer to the webhook. Prefer a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)). Empty: none.')
@secure()
param auditWebhookBearerToken string = ''

@description('AUDIT_ROUTES: routes from clusters to webhooks, as an inline YAML or JSON document (see the README). Empty: every cluster goes to auditWebhookUrl.')
param auditRoutes string = ''

@description('AUDIT_POLICY: an audit.k8s.io/v1 Policy applied to every Event, inline YAML or JSON. Empty: Events pass unchanged.')
param auditPolicy string = ''

@description('AUDIT_CLUSTER_ANNOTATIONS: on adds the source cluster as annotations to every Event; off forwards Events untouched.')
@allowed([
  'on'
  'off'
])
param auditClusterAnnotations string = 'on'

@description('AUDIT_WEBHOOK_FORMAT: eventlist (as kube-apiserver sends) or event (one Event per POST).')
@allowed([
  'eventlist'
  'event'
])
param auditWebhookFormat string = 'eventlist'

@description('AUDIT_CATEGORIES: diagnostic categories whose records are audit Events.')
param auditCategories string = 'kube-audit,kube-audit-admin'

@description('AUDIT_BATCH_MAX_EVENTS: most Events per POST.')
param auditBatchMaxEvents int = 400

@description('AUDIT_BATCH_MAX_BYTES: most bytes per POST.')
param auditBatchMaxBytes string = '10MiB'

@description('AUDIT_WEBHOOK_TIMEOUT: time limit of one POST attempt.')
param auditWebhookTimeout string = '30s'

@description('AUDIT_DELIVERY_DEADLINE: delivery budget of one invocation; keep it well under the 10-minute functionTimeout.')
param auditDeliveryDeadline string = '2m'

@description('AUDIT_WEBHOOK_CONCURRENCY: batches of one invocation in flight at once.')
param auditWebhookConcurrency int = 4

@description('AUDIT_RETRY_INITIAL_BACKOFF: first retry delay.')
param auditRetryInitialBackoff string = '500ms'

@description('AUDIT_RETRY_MAX_BACKOFF: retry delay cap.')
param auditRetryMaxBackoff string = '30s'

@description('AUDIT_MAX_BODY_BYTES: largest invocation body accepted.')
param auditMaxBodyBytes string = '256MiB'

@description('RUST_LOG: the handler log filter.')
param rustLog string = 'info'

var suffix = uniqueString(resourceGroup().id, appName)
var storageName = take('staudit${suffix}', 24)
var deploymentContainer = 'app-package'
var eventHubName = 'aks-audit'
var consumerGroupName = 'aks-audit-forwarder'
var createDiagnosticSetting = !empty(aksClusterName)

var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: 'id-${appName}'
  location: location
  tags: tags
}

// Host storage: Event Hubs checkpoints and leases, host locks, and the deployment package.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_43: the name is take('staudit' + uniqueString(...), 24): lower-case letters and digits, 3 to 24 characters; the scanner cannot evaluate the expression
    // checkov:skip=CKV_AZURE_35: the Flex Consumption host reaches its storage over the public endpoint unless private endpoints and VNet-routed storage are set up; access is identity-only (shared keys disabled)
    // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

// Where the deadletter output binding (function.json) writes what could not be delivered.
resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'audit-deadletter'
  properties: {
    publicAccess: 'None'
  }
}

// The hub the cluster's diagnostic setting streams into. Local (SAS) auth stays enabled only
// when this template creates the diagnostic setting: Azure Monitor streams to Event Hubs
// through a namespace authorization rule, not an identity. The forwarder itself always uses
// its managed identity.
resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: 'evhns-${appName}-${suffix}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: !createDiagnosticSetting
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: eventHubNamespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: consumerGroupName
}

// Send-only rule used by the AKS diagnostic setting (and nothing else).
resource diagnosticsSendRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = if (createDiagnosticSetting) {
  parent: eventHubNamespace
  name: 'aks-diagnostics-send'
  properties: {
    rights: [
      'Send'
    ]
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: zone redundancy for Flex Consumption is offered only in some regions; enable it there with zoneRedundant: true
    reserved: true
  }
}

var appSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'EventHubConnection__fullyQualifiedNamespace'
    value: '${eventHubNamespace.name}.servicebus.windows.net'
  }
  {
    name: 'EventHubConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'EventHubConnection__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'EVENTHUB_NAME'
    value: eventHub.name
  }
  {
    name: 'EVENTHUB_CONSUMER_GROUP'
    value: consumerGroup.name
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
  {
    name: 'AUDIT_WEBHOOK_URL'
    value: auditWebhookUrl
  }
  {
    name: 'AUDIT_WEBHOOK_BEARER_TOKEN'
    value: auditWebhookBearerToken
  }
  {
    name: 'AUDIT_ROUTES'
    value: auditRoutes
  }
  {
    name: 'AUDIT_POLICY'
    value: auditPolicy
  }
  {
    name: 'AUDIT_CLUSTER_ANNOTATIONS'
    value: auditClusterAnnotations
  }
  {
    name: 'AUDIT_WEBHOOK_FORMAT'
    value: auditWebhookFormat
  }
  {
    name: 'AUDIT_CATEGORIES'
    value: auditCategories
  }
  {
    name: 'AUDIT_BATCH_MAX_EVENTS'
    value: string(auditBatchMaxEvents)
  }
  {
    name: 'AUDIT_BATCH_MAX_BYTES'
    value: auditBatchMaxBytes
  }
  {
    name: 'AUDIT_WEBHOOK_TIMEOUT'
    value: auditWebhookTimeout
  }
  {
    name: 'AUDIT_DELIVERY_DEADLINE'
    value: auditDeliveryDeadline
  }
  {
    name: 'AUDIT_WEBHOOK_CONCURRENCY'
    value: string(auditWebhookConcurrency)
  }
  {
    name: 'AUDIT_RETRY_INITIAL_BACKOFF'
    value: auditRetryInitialBackoff
  }
  {
    name: 'AUDIT_RETRY_MAX_BACKOFF'
    value: auditRetryMaxBackoff
  }
  {
    name: 'AUDIT_MAX_BODY_BYTES'
    value: auditMaxBodyBytes
  }
  {
    name: 'RUST_LOG'
    value: rustLog
  }
]

// Flex Consumption: the runtime comes from functionAppConfig, so there is no
// FUNCTIONS_WORKER_RUNTIME or FUNCTIONS_EXTENSION_VERSION app setting.
resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: the app serves no HTTP functions (only an Event Hub trigger), so there is no inbound client to present a certificate
    // checkov:skip=CKV_AZURE_213: Flex Consumption has no health-check path setting, and the handler serves only the host's loopback probe
    // checkov:skip=CKV_AZURE_222: func azure functionapp publish deploys through the app's public SCM endpoint; the app exposes no HTTP functions on it
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales by instance count (maximumInstanceCount), not by a minimum worker count
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    virtualNetworkSubnetId: empty(integrationSubnetId) ? null : integrationSubnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
  }
}

// Least privilege for one identity, each role at the narrowest scope that works.

// The host keeps Event Hubs checkpoints and partition leases as blobs, and Flex reads the
// deployment package from a blob container: Storage Blob Data Owner is the documented minimum
// for AzureWebJobsStorage with an identity.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.blobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The host writes its diagnostic events to a table in AzureWebJobsStorage. No queue role: an
// Event Hub trigger uses no queues (those serve blob triggers and Durable Functions).
resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.tableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The trigger reads the hub. Assigned on the event hub itself: a role on the consumer group
// alone fails with "'Listen' claim(s) are required".
resource eventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHub.id, identity.id, roles.eventHubsDataReceiver)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights has local auth disabled: telemetry is sent with the identity.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The cluster's diagnostic setting, in the cluster's resource group.
module diagnosticSetting 'modules/aks-diagnostic-setting.bicep' = if (createDiagnosticSetting) {
  name: 'aks-audit-diagnostic-setting'
  scope: resourceGroup(aksResourceGroup)
  params: {
    aksClusterName: aksClusterName
    eventHubName: eventHub.name
    eventHubAuthorizationRuleId: diagnosticsSendRule.id
    includeKubeAudit: includeKubeAudit
  }
}

@description('The function app to publish to: func azure functionapp publish <functionAppName>.')
output functionAppName string = site.name

@description('The Event Hubs namespace.')
output eventHubNamespace string = eventHubNamespace.name

@description('The event hub the cluster streams to.')
output eventHubName string = eventHub.name

@description('The forwarder consumer group.')
output consumerGroup string = consumerGroup.name

@description('Storage account and container holding dead letters (JSON lines) for aks-audit-forwarder resend.')
output deadLetterLocation string = '${storage.name}/${deadLetterContainer.name}'

@description('Client id of the managed identity the app uses for every connection.')
output identityClientId string = identity.properties.clientId
