
$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb/fuzz1.0"fuzz.parcel_dispatched*
time:À×›É€åšw*%
datacontenttypeapplication/json*
eventversion*
partitionkeyp-3:%{"parcel":"p-3","carrier_code":"DHL"}