// Private DNS zones for the forwarder's private endpoints, linked to one VNet.

@description('Zone names, e.g. privatelink.blob.core.windows.net.')
param zoneNames array

@description('Resource id of the VNet the zones are linked to.')
param vnetId string

@description('Tags applied to every resource.')
param tags object

resource zone 'Microsoft.Network/privateDnsZones@2020-06-01' = [for name in zoneNames: {
  name: name
  location: 'global'
  tags: tags
}]

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (name, i) in zoneNames: {
  parent: zone[i]
  name: 'link-${uniqueString(vnetId)}'
  location: 'global'
  tags: tags
  properties: {
    virtualNetwork: {
      id: vnetId
    }
    registrationEnabled: false
  }
}]
