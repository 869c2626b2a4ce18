
$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb/fuzz1.0"fuzz.parcel_lost*
time:À×›É€åšw*%
datacontenttypeapplication/json*
eventversion*
subjectp-5*9

dataschema+*)https://example.com/schemas/parcel_lost/1*
partitionkeyp-5*7
correlationid&$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb*5
causationid&$0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fa*H
traceparent9700-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01*

tracestate
vendor=1*#
	dedupekeyfuzz.parcel_lost:p-5*"
sequence00000000000000000042*
audited*
priorityýÿÿÿÿÿÿÿÿ*
tenantacme:"p-5"