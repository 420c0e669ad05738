// aks-audit-forwarder: everything one resource group needs to forward an AKS cluster's audit
// logs from an Event Hub to an audit webhook with a Flex Consumption function app.
// Every connection uses one user-assigned managed identity; no keys or connection strings are
// stored in app settings. Every app setting is owned by this template (parameters, plus the
// secure extraAppSettings object), so a redeployment never loses a setting.
// Reference: docs/deployment.md.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Names and regions
// ---------------------------------------------------------------------------------------------

@description('Base name of the function app and the prefix of the other resources (letters, digits, hyphens; starts with a letter). Every generated name stays within its resource type\'s limit for any allowed length (scripts/check_infra.py proves it).')
@minLength(3)
@maxLength(40)
param appName string

@description('Region of the function app, its storage, identity and monitoring. With VNet integration, the integration subnet must be in this region. It must offer Flex Consumption with the custom runtime (scripts/deploy.sh checks both before deploying).')
param location string = resourceGroup().location

@description('Region of the Event Hubs namespace. It must be the cluster\'s region: a diagnostic setting streams only to an event hub in the monitored resource\'s region. scripts/deploy.sh sets it from the cluster when it is not given. Each cluster region needs its own namespace, so one deployment per region.')
param eventHubLocation string = location

@description('Tags applied to every resource.')
param tags object = {
  workload: 'aks-audit-forwarder'
}

// ---------------------------------------------------------------------------------------------
// Function app
// ---------------------------------------------------------------------------------------------

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

@description('Resource id of an existing subnet delegated to Microsoft.App/environments, in the region of location, for VNet integration (the audit service is usually an internal load balancer in the cluster VNet). Empty: no VNet integration.')
param integrationSubnetId string = ''

@description('Resource id of an existing subnet for private endpoints of the storage account and the Event Hubs namespace (the dead-letter container holds full audit Events). Set together with integrationSubnetId. When set, both services deny public network access except trusted Azure services (the AKS diagnostic setting). Empty: no private endpoints.')
param privateEndpointSubnetId string = ''

@description('Resource group holding existing private DNS zones (privatelink.blob..., privatelink.table..., privatelink.servicebus.windows.net) already linked to the VNet, e.g. a central hub. Empty: the zones are created in this resource group and linked to the private endpoint subnet\'s VNet.')
param privateDnsZoneResourceGroup string = ''

@description('Subscription of privateDnsZoneResourceGroup.')
param privateDnsZoneSubscriptionId string = subscription().subscriptionId

// ---------------------------------------------------------------------------------------------
// Event Hubs
// ---------------------------------------------------------------------------------------------

@description('Event hub partitions: the most function instances that consume in parallel. Fixed at creation on the Standard tier: changing it later fails the deployment; to change it, create a new hub (a new appName).')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days the hub keeps events: the longest receiver outage survived without loss.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Event Hubs Standard throughput units (1 MB/s or 1000 events/s in each, 2 MB/s out each).')
@minValue(1)
@maxValue(40)
param eventHubThroughputUnits int = 1

@description('Let Event Hubs raise throughput units automatically under load, up to eventHubMaximumThroughputUnits.')
param eventHubAutoInflate bool = true

@description('Upper bound for auto-inflate (ignored without it). At least eventHubThroughputUnits.')
@minValue(1)
@maxValue(40)
param eventHubMaximumThroughputUnits int = 4

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

@description('Name of the existing AKS cluster whose audit logs are forwarded. Empty: no diagnostic setting is created (stream into the hub yourself, e.g. from several clusters in the hub\'s region).')
param aksClusterName string = ''

@description('Resource group of that cluster (may differ from this one).')
param aksResourceGroup string = resourceGroup().name

@description('Subscription of that cluster (may differ from this one; the deploying user needs Monitoring Contributor on the cluster there).')
param aksSubscriptionId string = subscription().subscriptionId

@description('The one audit log category streamed, and the forwarder\'s AUDIT_CATEGORIES. kube-audit-admin: every request but get and list (the usual choice). kube-audit: every request, get and list included (far more volume). kube-audit is a superset of kube-audit-admin, so streaming both would send every mutating Event twice.')
@allowed([
  'kube-audit-admin'
  'kube-audit'
])
param auditCategory string = 'kube-audit-admin'

@description('Resource id of an existing storage account that the cluster\'s diagnostic setting also archives auditCategory to, as hourly PT1H.json blobs in the container insights-logs-<auditCategory>: the archive aks-audit-forwarder backfill reads after an outage longer than messageRetentionInDays. The template creates no account and sets no retention: the blobs stay until the account\'s lifecycle rules delete them. Azure Monitor wants the account in the cluster\'s region. Empty: no archive (only the event hub, for messageRetentionInDays days).')
param auditArchiveStorageAccountId string = ''

// ---------------------------------------------------------------------------------------------
// Key Vault
// ---------------------------------------------------------------------------------------------

@description('Name of an existing Key Vault (Azure RBAC permission model) whose secrets app settings refer to with @Microsoft.KeyVault(SecretUri=...). The app\'s identity gets Key Vault Secrets User on it and is the identity that resolves references. Empty: no role assignment (references then cannot resolve, and the forwarder refuses to start on an unresolved one).')
param keyVaultName string = ''

@description('Resource group of that Key Vault.')
param keyVaultResourceGroup string = resourceGroup().name

@description('Subscription of that Key Vault.')
param keyVaultSubscriptionId string = subscription().subscriptionId

// ---------------------------------------------------------------------------------------------
// Alerts and retention
// ---------------------------------------------------------------------------------------------

@description('Email address that receives the alerts. Empty: no email receiver.')
param alertEmail string = ''

@description('Webhook (e.g. a chat or paging integration) that receives the alerts in the common alert schema. Secure because such URLs carry a token. Empty: no webhook receiver.')
@secure()
param alertWebhookUrl string = ''

@description('Failed invocations within 30 minutes that raise the delivery-stalled alert. A stalled partition fails once per auditDeliveryDeadline and then waits up to 5 minutes (the retry policy in function.json), so with the defaults it fails about every 7 minutes, 4 times in 30: 3 means a failure that persists. Keep it at most 30 / (deadline + 5 minutes).')
@minValue(1)
param failedInvocationsThreshold int = 3

@description('Minutes with events arriving in the hub and no successful invocation before the falling-behind alert fires. One of the window sizes log alerts accept.')
@allowed([
  15
  30
  45
  60
  120
  180
  240
  300
  360
  1440
])
param fallingBehindWindowMinutes int = 30

@description('Seconds of delivery lag (lag_ms of the summary lines: from the oldest enqueued time of an invocation to its delivery) whose 95th percentile over freshnessWindowMinutes raises the freshness alert. AKS itself takes minutes to stream a record to the hub, so keep it well above that.')
@minValue(1)
param freshnessThresholdSeconds int = 900

@description('Minutes over which the freshness alert takes the 95th percentile of lag_ms. One of the window sizes log alerts accept.')
@allowed([
  15
  30
  45
  60
  120
])
param freshnessWindowMinutes int = 30

@description('Days a dead-letter blob is kept before the lifecycle rule deletes it. Replay them with aks-audit-forwarder resend before then.')
@minValue(1)
@maxValue(3650)
param deadLetterRetentionDays int = 90

@description('Days Log Analytics keeps the forwarder\'s logs and metrics.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// ---------------------------------------------------------------------------------------------
// Forwarder settings: one parameter per AUDIT_* variable (README, Configuration). Empty means
// unset: the forwarder treats an empty value as absent and uses its default.
// ---------------------------------------------------------------------------------------------

@description('AUDIT_WEBHOOK_URL: where the audit Events go, e.g. http://10.240.0.100:7765/k8s_audit. Secure because it may carry credentials. Leave empty only when auditRoutes is set.')
@secure()
param auditWebhookUrl string = ''

@description('AUDIT_WEBHOOK_BEARER_TOKEN: sent as Authorization: Bearer to the webhook. Prefer a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)) with keyVaultName. Empty: none.')
@secure()
param auditWebhookBearerToken string = ''

@description('AUDIT_WEBHOOK_USERNAME: basic auth user (instead of a bearer token). Empty: none.')
@secure()
param auditWebhookUsername string = ''

@description('AUDIT_WEBHOOK_PASSWORD: basic auth password, ideally a Key Vault reference. Empty: none.')
@secure()
param auditWebhookPassword string = ''

@description('AUDIT_WEBHOOK_CA: extra trusted CA certificates for an HTTPS webhook with a private CA, inline PEM. Empty: public roots only.')
param auditWebhookCa string = ''

@description('AUDIT_WEBHOOK_CLIENT_CERT: client certificate chain for mTLS, inline PEM. Empty: no client certificate.')
param auditWebhookClientCert string = ''

@description('AUDIT_WEBHOOK_CLIENT_KEY: the client certificate\'s private key, inline PEM or a Key Vault reference. Empty: none.')
@secure()
param auditWebhookClientKey string = ''

@description('AUDIT_WEBHOOK_INSECURE_SKIP_VERIFY: turn TLS verification off (logged as a warning at every start). For experiments only.')
param auditWebhookInsecureSkipVerify bool = false

@description('AUDIT_WEBHOOK_HEADERS: extra headers as a JSON object, e.g. {"X-Tenant":"prod"}. Secure because headers often carry keys. Empty: none.')
@secure()
param auditWebhookHeaders string = ''

@description('AUDIT_WEBHOOK_FORMAT: eventlist (as kube-apiserver sends) or event (one Event per POST).')
@allowed([
  'eventlist'
  'event'
])
param auditWebhookFormat string = 'eventlist'

@description('AUDIT_ROUTES: routes from clusters to webhooks, as an inline YAML or JSON document (docs/forwarding.md), or a file of the package (config/routes.yaml, shipped by scripts/package.sh). Secure because route URLs may carry credentials; secrets the routes name (bearerTokenSetting, basicAuthSetting, ...) go in extraAppSettings. Empty: every cluster goes to auditWebhookUrl.')
@secure()
param auditRoutes string = ''

@description('AUDIT_ALERTS: alert rules and their Teams, Slack or webhook notifiers (docs/alerts.md), an inline YAML or JSON document, or a file of the package (config/alerts.yaml). Secure because notifier URLs are secrets: give them with urlSetting and alertNotifierUrls rather than inline. Empty: no alerts.')
@secure()
param auditAlerts string = ''

@description('Notifier URLs for auditAlerts: an object of app-setting names to values, e.g. {"ALERTS_TEAMS_URL": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams-url/)"}; the rules name each setting with urlSetting. Use Key Vault references (with keyVaultName): a Teams or Slack URL carries its credential. Names must not start with AUDIT_. Empty: none.')
@secure()
param alertNotifierUrls object = {}

@description('AUDIT_POLICY: an audit.k8s.io/v1 Policy applied to every Event, inline YAML or JSON. Secure so that it never shows in deployment history. Empty: Events pass unchanged (or auditPolicyFile).')
@secure()
param auditPolicy string = ''

@description('AUDIT_POLICY_FILE: a Policy file relative to the app root, e.g. config/policy.yaml: scripts/package.sh ships the files of PACKAGE_CONFIG_DIR (or ./config) under config/. Set this or auditPolicy, not both. Empty: none.')
param auditPolicyFile string = ''

@description('AUDIT_CLUSTER_ANNOTATIONS: on adds the source cluster as annotations to every Event; off forwards Events untouched.')
@allowed([
  'on'
  'off'
])
param auditClusterAnnotations string = 'on'

@description('AUDIT_RECEIVER: the receiver the webhook is (generic, falco or sysdig); it sets the truncation limits and per-Event checks its receiver needs. Routes can name their own (receiver: in auditRoutes).')
@allowed([
  'generic'
  'falco'
  'sysdig'
])
param auditReceiver string = 'generic'

@description('AUDIT_TRUNCATE_ENABLED: true truncates Events over the per-Event limit as kube-apiserver does (requestObject and responseObject dropped, annotated); one still too large is dead-lettered. Empty: as the receiver profile says (on for falco).')
@allowed([
  ''
  'true'
  'false'
])
param auditTruncateEnabled string = ''

@description('AUDIT_TRUNCATE_MAX_EVENT_SIZE: the per-Event limit while truncation is on, e.g. 100KiB. Empty: from the receiver profile (102400 bytes; 262144 as Falco measures it for falco).')
param auditTruncateMaxEventSize string = ''

@description('AUDIT_TRUNCATE_MAX_BATCH_SIZE: the largest POST body while truncation is on, e.g. 10MiB. Empty: from the receiver profile (10485760 bytes; 12582912 for falco).')
param auditTruncateMaxBatchSize string = ''

@description('AUDIT_BATCH_MAX_EVENTS: most Events per POST.')
@minValue(1)
param auditBatchMaxEvents int = 400

@description('AUDIT_BATCH_MAX_BYTES: most bytes per POST.')
param auditBatchMaxBytes string = '10MiB'

@description('AUDIT_WEBHOOK_TIMEOUT: time limit of one POST attempt.')
param auditWebhookTimeout string = '30s'

@description('AUDIT_DELIVERY_DEADLINE: delivery budget of one invocation; keep it well under the 10-minute functionTimeout.')
param auditDeliveryDeadline string = '2m'

@description('AUDIT_WEBHOOK_CONCURRENCY: batches of one invocation in flight at once (1 to 64).')
@minValue(1)
@maxValue(64)
param auditWebhookConcurrency int = 4

@description('AUDIT_RETRY_INITIAL_BACKOFF: first retry delay.')
param auditRetryInitialBackoff string = '500ms'

@description('AUDIT_RETRY_MAX_BACKOFF: retry delay cap.')
param auditRetryMaxBackoff string = '30s'

@description('AUDIT_ISOLATE_AFTER_RETRIES: from this host retry of an invocation on, an Event that keeps failing transiently while others are delivered is dead-lettered instead of blocking the partition.')
@minValue(0)
@maxValue(1000)
param auditIsolateAfterRetries int = 2

@description('AUDIT_MAX_BODY_BYTES: largest invocation body accepted.')
param auditMaxBodyBytes string = '256MiB'

@description('AUDIT_MAX_BYTES_IN_FLIGHT: bytes of invocation bodies held at once, all invocations of an instance together; raise it with instanceMemoryMB (docs/functions-host.md).')
param auditMaxBytesInFlight string = '512MiB'

@description('AUDIT_BODY_READ_TIMEOUT: longest time to receive one invocation body (at most 10m).')
param auditBodyReadTimeout string = '60s'

@description('AUDIT_SHUTDOWN_GRACE: how long in-flight invocations may finish after SIGTERM (at most 10m).')
param auditShutdownGrace string = '30s'

@description('AUDIT_MAX_RECORDS_PER_EVENT: most records one Event Hub event may hold.')
@minValue(1)
param auditMaxRecordsPerEvent int = 50000

@description('AUDIT_DEADLETTER_BINDING: deadletter writes dead letters to the audit-deadletter container; off only logs them at error level.')
@allowed([
  'deadletter'
  'off'
])
param auditDeadLetterBinding string = 'deadletter'

@description('RUST_LOG: the handler log filter.')
param rustLog string = 'info'

@description('Further app settings as a JSON object of name: value, e.g. the app settings that routes name for their secrets, or Key Vault references. Merged over the AUDIT_* parameters above (a key here wins over them); the platform settings this template sets cannot be overridden. Secure: never shown in deployment history.')
@secure()
param extraAppSettings object = {}

// ---------------------------------------------------------------------------------------------
// Names: each bounded for every allowed appName (scripts/check_infra.py evaluates them).
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, appName)
// Storage: 3-24 lower-case letters and digits.
var storageName = take('staudit${suffix}', 24)
// Event Hubs namespace: 6-50 characters.
var eventHubNamespaceName = 'evhns-${take(appName, 30)}-${suffix}'
// Diagnostic setting on the cluster: unique per forwarder, so several can coexist.
var aksDiagnosticSettingName = 'aks-audit-${take(appName, 30)}-${suffix}'
var aksDiagnosticDeploymentName = take('aks-audit-diag-${suffix}-${appName}', 64)
var keyVaultAccessDeploymentName = take('kv-access-${suffix}-${appName}', 64)
var privateEndpointsDeploymentName = take('private-endpoints-${suffix}-${appName}', 64)
var privateEndpointPrefix = 'pe-${take(appName, 40)}'
var workspaceName = 'log-${appName}'
var deploymentContainer = 'app-package'
var deadLetterContainerName = 'audit-deadletter'
var eventHubName = 'aks-audit'
var consumerGroupName = 'aks-audit-forwarder'
var createDiagnosticSetting = !empty(aksClusterName)
var usePrivateEndpoints = !empty(privateEndpointSubnetId)
var createActionGroup = !empty(alertEmail) || !empty(alertWebhookUrl)
var alertActionGroups = createActionGroup ? [
  actionGroup.id
] : []

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

// Host storage: Event Hubs checkpoints and leases, host locks, the deployment package, and the
// dead letters (full audit Events). With private endpoints, only they and trusted Azure
// services reach it.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_43: the name is take('staudit' + uniqueString(...), 24): lower-case letters and digits, 3 to 24 characters; the scanner cannot evaluate the expression (check_infra.py does)
    // checkov:skip=CKV_AZURE_35: the default action is Deny whenever privateEndpointSubnetId is set; without private endpoints the Flex host reaches its storage over the public endpoint, identity-only (shared keys disabled)
    // checkov:skip=CKV_AZURE_59: public network access stays Enabled so trusted Azure services keep their bypass; the firewall (default action Deny with private endpoints) restricts everything else
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: usePrivateEndpoints ? 'Deny' : 'Allow'
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
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Dead letters are deleted deadLetterRetentionDays after they were written.
resource storageLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-dead-letters'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadLetterContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    deadLetterContainer
  ]
}

// The hub the cluster's diagnostic setting streams into, in the cluster's region. Local (SAS)
// auth stays enabled only when this template creates the diagnostic setting: Azure Monitor
// streams to Event Hubs through a namespace authorization rule, not an identity. The forwarder
// itself always uses its managed identity.
resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: eventHubNamespaceName
  location: eventHubLocation
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: eventHubThroughputUnits
  }
  properties: {
    disableLocalAuth: !createDiagnosticSetting
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: eventHubAutoInflate
    maximumThroughputUnits: eventHubAutoInflate ? max(eventHubMaximumThroughputUnits, eventHubThroughputUnits) : 0
  }
}

// With private endpoints: deny everything else but trusted services (Azure Monitor's
// diagnostic settings are one).
resource eventHubNetworkRules 'Microsoft.EventHub/namespaces/networkRuleSets@2024-01-01' = if (usePrivateEndpoints) {
  parent: eventHubNamespace
  name: 'default'
  properties: {
    defaultAction: 'Deny'
    publicNetworkAccess: 'Enabled'
    trustedServiceAccessEnabled: true
    ipRules: []
    virtualNetworkRules: []
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: eventHubNamespace
  name: eventHubName
  properties: {
    // Fixed at creation on the Standard tier.
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: consumerGroupName
}

// The rule the AKS diagnostic setting streams with (and nothing else uses). Azure Monitor needs
// all three rights on it: "Streaming to Event Hubs requires Manage, Send, and Listen
// permissions" (Azure Monitor docs, Diagnostic settings, destination limitations); a Send-only
// rule is not enough. Manage must be listed with Listen and Send.
resource diagnosticsStreamRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = if (createDiagnosticSetting) {
  parent: eventHubNamespace
  name: 'aks-diagnostics-stream'
  properties: {
    rights: [
      'Listen'
      'Send'
      'Manage'
    ]
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionInDays
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

// The forwarder's settings. Empty values are unset for the forwarder.
var auditSettings = {
  AUDIT_WEBHOOK_URL: auditWebhookUrl
  AUDIT_WEBHOOK_BEARER_TOKEN: auditWebhookBearerToken
  AUDIT_WEBHOOK_USERNAME: auditWebhookUsername
  AUDIT_WEBHOOK_PASSWORD: auditWebhookPassword
  AUDIT_WEBHOOK_CA: auditWebhookCa
  AUDIT_WEBHOOK_CLIENT_CERT: auditWebhookClientCert
  AUDIT_WEBHOOK_CLIENT_KEY: auditWebhookClientKey
  AUDIT_WEBHOOK_INSECURE_SKIP_VERIFY: auditWebhookInsecureSkipVerify ? 'true' : 'false'
  AUDIT_WEBHOOK_HEADERS: auditWebhookHeaders
  AUDIT_WEBHOOK_FORMAT: auditWebhookFormat
  AUDIT_ROUTES: auditRoutes
  AUDIT_ALERTS: auditAlerts
  AUDIT_POLICY_FILE: auditPolicyFile
  AUDIT_POLICY: auditPolicy
  AUDIT_CLUSTER_ANNOTATIONS: auditClusterAnnotations
  AUDIT_CATEGORIES: auditCategory
  AUDIT_BATCH_MAX_EVENTS: string(auditBatchMaxEvents)
  AUDIT_BATCH_MAX_BYTES: auditBatchMaxBytes
  AUDIT_WEBHOOK_TIMEOUT: auditWebhookTimeout
  AUDIT_DELIVERY_DEADLINE: auditDeliveryDeadline
  AUDIT_WEBHOOK_CONCURRENCY: string(auditWebhookConcurrency)
  AUDIT_RETRY_INITIAL_BACKOFF: auditRetryInitialBackoff
  AUDIT_RETRY_MAX_BACKOFF: auditRetryMaxBackoff
  AUDIT_ISOLATE_AFTER_RETRIES: string(auditIsolateAfterRetries)
  AUDIT_MAX_BODY_BYTES: auditMaxBodyBytes
  AUDIT_MAX_BYTES_IN_FLIGHT: auditMaxBytesInFlight
  AUDIT_BODY_READ_TIMEOUT: auditBodyReadTimeout
  AUDIT_SHUTDOWN_GRACE: auditShutdownGrace
  AUDIT_MAX_RECORDS_PER_EVENT: string(auditMaxRecordsPerEvent)
  AUDIT_DEADLETTER_BINDING: auditDeadLetterBinding
  AUDIT_RECEIVER: auditReceiver
  AUDIT_TRUNCATE_ENABLED: auditTruncateEnabled
  AUDIT_TRUNCATE_MAX_EVENT_SIZE: auditTruncateMaxEventSize
  AUDIT_TRUNCATE_MAX_BATCH_SIZE: auditTruncateMaxBatchSize
  RUST_LOG: rustLog
}

// What the host needs: identity-based connections and telemetry. Applied last, so
// extraAppSettings cannot break them.
var platformSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  EventHubConnection__fullyQualifiedNamespace: '${eventHubNamespace.name}.servicebus.windows.net'
  EventHubConnection__credential: 'managedidentity'
  EventHubConnection__clientId: identity.properties.clientId
  EVENTHUB_NAME: eventHub.name
  EVENTHUB_CONSUMER_GROUP: consumerGroup.name
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

// The whole app settings collection. Writing app settings replaces the collection, so every
// setting lives here: nothing is added in the portal, and a redeployment loses nothing.
var allAppSettings = union(auditSettings, alertNotifierUrls, extraAppSettings, platformSettings)

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
    // checkov:skip=CKV_AZURE_222: func azure functionapp publish deploys through the app's public SCM endpoint with an Entra token (basic publishing credentials are off); the app exposes no HTTP functions
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales by instance count (maximumInstanceCount), not by a minimum worker count
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    // Key Vault references (@Microsoft.KeyVault(...)) resolve with the user-assigned identity;
    // without this the platform would try a system-assigned identity the app does not have.
    keyVaultReferenceIdentity: identity.id
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
    }
  }
}

// The app settings: the whole collection in one resource (a name: value object, so no loop over
// values known only during the deployment).
resource appSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  // checkov:skip=CKV_AZURE_13: this resource is the app settings collection, not the site configuration; the site has no HTTP functions to authenticate
  // checkov:skip=CKV_AZURE_63: this resource is the app settings collection; HTTP logging is a site configuration the scanner mistakes it for
  // checkov:skip=CKV_AZURE_65: this resource is the app settings collection; detailed error messages are a site configuration the scanner mistakes it for
  // checkov:skip=CKV_AZURE_66: this resource is the app settings collection; failed request tracing is a site configuration the scanner mistakes it for
  // checkov:skip=CKV_AZURE_80: this resource is the app settings collection of a custom handler; there is no .NET Framework version to set
  // checkov:skip=CKV_AZURE_88: this resource is the app settings collection; Flex Consumption keeps content in blob storage, not Azure Files
  // checkov:skip=CKV_AZURE_222: this resource is the app settings collection; public network access is a site property (see the site's justification)
  parent: site
  name: 'appsettings'
  properties: allAppSettings
}

// Basic-auth publishing credentials off for FTP and SCM: publishing uses Entra tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
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

// Key Vault Secrets User on the vault the app settings refer to (module: the vault may live in
// another resource group or subscription).
module keyVaultAccess 'modules/key-vault-access.bicep' = if (!empty(keyVaultName)) {
  name: keyVaultAccessDeploymentName
  scope: resourceGroup(keyVaultSubscriptionId, keyVaultResourceGroup)
  params: {
    keyVaultName: keyVaultName
    principalId: identity.properties.principalId
  }
}

// Private endpoints for blob, table and the Event Hubs namespace, with their DNS records.
module privateEndpoints 'modules/private-endpoints.bicep' = if (usePrivateEndpoints) {
  name: privateEndpointsDeploymentName
  params: {
    location: location
    tags: tags
    namePrefix: privateEndpointPrefix
    subnetId: privateEndpointSubnetId
    storageAccountId: storage.id
    eventHubNamespaceId: eventHubNamespace.id
    dnsZoneResourceGroup: privateDnsZoneResourceGroup
    dnsZoneSubscriptionId: privateDnsZoneSubscriptionId
  }
}

// The cluster's diagnostic setting, in the cluster's resource group and subscription.
module diagnosticSetting 'modules/aks-diagnostic-setting.bicep' = if (createDiagnosticSetting) {
  name: aksDiagnosticDeploymentName
  scope: resourceGroup(aksSubscriptionId, aksResourceGroup)
  params: {
    aksClusterName: aksClusterName
    diagnosticSettingName: aksDiagnosticSettingName
    eventHubName: eventHub.name
    eventHubAuthorizationRuleId: diagnosticsStreamRule.id
    auditCategory: auditCategory
    archiveStorageAccountId: auditArchiveStorageAccountId
  }
}

// ---------------------------------------------------------------------------------------------
// Monitoring: the namespace's logs to the workspace, and alerts when delivery stops or slows.
// ---------------------------------------------------------------------------------------------

// No diagnostic setting on the function app: Microsoft's Flex Consumption page has listed
// diagnostic settings as not supported on the plan. The app's logs and requests reach the
// workspace through workspace-based Application Insights (AppTraces, AppRequests), which is what
// the alerts query (docs/deployment.md, Alerts and monitoring).

// The namespace's metrics (IncomingMessages) feed the falling-behind alert.
resource eventHubDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-${workspaceName}'
  scope: eventHubNamespace
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: 'ag-${appName}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'auditfwd'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// Every invocation is a request in Application Insights (AppRequests in the workspace). A
// failed one is retried by the host, and the partition waits: repeated failures mean delivery
// has stalled.
resource alertDeliveryStalled 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-delivery-stalled'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: audit delivery stalled'
    description: 'Invocations keep failing: the receiver is down or refuses the forwarder (401, 403, 404), and the partition is paused until it is fixed. See the last_failure field of the summary lines.'
    severity: 1
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT5M'
    // At least (threshold) failures of a stalled partition must fit in the window: it fails once
    // per delivery deadline (2 min) plus retry delay (up to 5 min), about every 7 minutes.
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: 'AppRequests | where Success == false'
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: failedInvocationsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: alertActionGroups
    }
  }
}

// The summary line of every invocation counts dead letters (dead_lettered=N).
resource alertDeadLetters 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-dead-letters'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: audit Events dead-lettered'
    description: 'The forwarder wrote dead letters (refused, unrouted or malformed Events) to the audit-deadletter container. Read the error lines, fix the cause and replay with aks-audit-forwarder resend.'
    severity: 2
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where Message contains "dead_lettered=" | extend deadLettered = toint(extract("dead_lettered=([0-9]+)", 1, Message)) | where deadLettered > 0 | project TimeGenerated, deadLettered'
          timeAggregation: 'Total'
          metricMeasureColumn: 'deadLettered'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: alertActionGroups
    }
  }
}

// Falling behind: events arrive in the hub (namespace metrics) but no invocation succeeds. Event
// Hubs Standard has no consumer-lag metric, so incoming messages without successful executions
// is the signal: it catches a stopped app, a broken trigger (identity, network) and a stall.
resource alertFallingBehind 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-falling-behind'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: audit forwarder falling behind'
    description: 'Events arrived in the event hub and no invocation succeeded in the window: the app is stopped, cannot read the hub, or every partition is stalled. The backlog is kept for the hub\'s retention only.'
    severity: 1
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT${fallingBehindWindowMinutes}M'
    criteria: {
      allOf: [
        {
          query: 'let incoming = toscalar(AzureMetrics | where ResourceProvider =~ "MICROSOFT.EVENTHUB" and MetricName == "IncomingMessages" | summarize sum(Total)); let succeeded = toscalar(AppRequests | where Success == true | count); print incoming = coalesce(incoming, 0.0), succeeded = succeeded | where incoming > 0 and succeeded == 0'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: alertActionGroups
    }
  }
}

// Freshness: lag_ms on every invocation's summary line is the time from the oldest enqueued
// time of the invocation to its delivery. Its 95th percentile over the window above the threshold
// means Events reach the detector late, although they still arrive (no failure needed).
resource alertFreshness 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appName}-freshness'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: audit Events arrive late'
    description: 'The 95th percentile of lag_ms (oldest enqueued time of an invocation to its delivery) is above ${freshnessThresholdSeconds} s: the forwarder or the receiver is slower than the stream, or invocations are being retried. See docs/operations.md, Freshness.'
    severity: 2
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${freshnessWindowMinutes}M'
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where Message has "lag_ms=" | extend lagMs = tolong(extract("lag_ms=([0-9]+)", 1, Message)) | where isnotnull(lagMs) | summarize lagP95Ms = percentile(lagMs, 95), TimeGenerated = max(TimeGenerated)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lagP95Ms'
          operator: 'GreaterThan'
          threshold: freshnessThresholdSeconds * 1000
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: alertActionGroups
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs: what the next steps need. No secrets.
// ---------------------------------------------------------------------------------------------

@description('The function app to publish to: func azure functionapp publish <functionAppName>.')
output functionAppName string = site.name

@description('Resource id of the function app.')
output functionAppId string = site.id

@description('Region of the function app.')
output location string = location

@description('The Event Hubs namespace.')
output eventHubNamespace string = eventHubNamespace.name

@description('Region of the Event Hubs namespace (the cluster\'s region).')
output eventHubLocation string = eventHubLocation

@description('The event hub the cluster streams to.')
output eventHubName string = eventHub.name

@description('The forwarder consumer group.')
output consumerGroup string = consumerGroup.name

@description('Resource id of the authorization rule diagnostic settings stream with (empty without aksClusterName). Other clusters in the hub\'s region can stream with it.')
output diagnosticsAuthorizationRuleId string = createDiagnosticSetting ? diagnosticsStreamRule.id : ''

@description('The storage account holding checkpoints, the package and dead letters.')
output storageAccountName string = storage.name

@description('Storage account and container holding dead letters (JSON lines) for aks-audit-forwarder resend.')
output deadLetterLocation string = '${storage.name}/${deadLetterContainer.name}'

@description('The Application Insights component (query traces | where message startswith "Invocation").')
output appInsightsName string = appInsights.name

@description('The Log Analytics workspace with the app\'s and the namespace\'s logs and the alert data.')
output logAnalyticsWorkspaceName string = logAnalytics.name

@description('Resource id of the managed identity the app uses for every connection.')
output identityId string = identity.id

@description('Client id of the managed identity.')
output identityClientId string = identity.properties.clientId

@description('Principal (object) id of the managed identity, for further role assignments.')
output identityPrincipalId string = identity.properties.principalId

@description('Name of the diagnostic setting on the cluster (empty without aksClusterName).')
output aksDiagnosticSettingName string = createDiagnosticSetting ? aksDiagnosticSettingName : ''

@description('Resource id of the cluster the diagnostic setting is on (empty without aksClusterName).')
output aksClusterId string = createDiagnosticSetting ? resourceId(aksSubscriptionId, aksResourceGroup, 'Microsoft.ContainerService/managedClusters', aksClusterName) : ''

@description('The audit log category streamed and forwarded.')
output auditCategory string = auditCategory

@description('Resource id of the Key Vault Secrets User assignment (empty without keyVaultName).')
output keyVaultRoleAssignmentId string = empty(keyVaultName) ? '' : keyVaultAccess!.outputs.roleAssignmentId
