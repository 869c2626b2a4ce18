
$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb/fuzz1.0"fuzz.parcel_booked*
time:À×›É€åšw*%
datacontenttypeapplication/json*
eventversion*
subjectp-1*
partitionkeyp-1*7
correlationid&$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb*"
sequence00000000000000000007:f{"parcel":"p-1","grams":1250,"tags":["fragile"],"note":"leave at the door","dimensions":[300,200,100]}