// Private endpoints for the forwarder's storage account (blob, table) and Event Hubs namespace,
// registered in private DNS zones: either zones this module creates and links to the subnet's
// VNet, or existing zones in dnsZoneResourceGroup (e.g. a central hub).

@description('Region of the private endpoints: the subnet\'s region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Prefix of the private endpoint names.')
param namePrefix string

@description('Resource id of the subnet the private endpoints are placed in.')
param subnetId string

@description('Resource id of the storage account.')
param storageAccountId string

@description('Resource id of the Event Hubs namespace.')
param eventHubNamespaceId string

@description('Resource group of existing, linked private DNS zones. Empty: create them here.')
param dnsZoneResourceGroup string = ''

@description('Subscription of dnsZoneResourceGroup.')
param dnsZoneSubscriptionId string = subscription().subscriptionId

var vnetId = split(subnetId, '/subnets/')[0]
var createZones = empty(dnsZoneResourceGroup)
var zoneSubscription = createZones ? subscription().subscriptionId : dnsZoneSubscriptionId
var zoneResourceGroup = createZones ? resourceGroup().name : dnsZoneResourceGroup
var endpoints = [
  {
    group: 'blob'
    zone: 'privatelink.blob.${environment().suffixes.storage}'
    target: storageAccountId
  }
  {
    group: 'table'
    zone: 'privatelink.table.${environment().suffixes.storage}'
    target: storageAccountId
  }
  {
    group: 'namespace'
    zone: 'privatelink.servicebus.windows.net'
    target: eventHubNamespaceId
  }
]

module zones 'private-dns-zones.bicep' = if (createZones) {
  name: take('private-dns-zones-${uniqueString(subnetId)}', 64)
  params: {
    zoneNames: [for e in endpoints: e.zone]
    vnetId: vnetId
    tags: tags
  }
}

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = [for e in endpoints: {
  name: '${namePrefix}-${e.group}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: e.group
        properties: {
          privateLinkServiceId: e.target
          groupIds: [
            e.group
          ]
        }
      }
    ]
  }
}]

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (e, i) in endpoints: {
  parent: endpoint[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: e.group
        properties: {
          privateDnsZoneId: resourceId(zoneSubscription, zoneResourceGroup, 'Microsoft.Network/privateDnsZones', e.zone)
        }
      }
    ]
  }
  dependsOn: [
    zones
  ]
}]
