build-dev/obj/apid/apid.o: apid/apid.c apid/apid.h common/http.h \
 apid/api_auth.h apid/api_devices.h apid/dev_store.h apid/api_fleet.h \
 apid/api_lanes.h apid/api_seed.h apid/api_alerts.h apid/api_analytics.h \
 apid/api_dash.h apid/api_prom.h apid/api_rules.h apid/api_telemetry.h \
 apid/api_tenant.h apid/api_users.h apid/api_ws.h common/clock.h \
 common/daemon.h common/cfg.h common/ep.h common/log.h common/mpjson.h \
 common/reload.h common/rpc.h common/strutil.h common/test.h \
 common/xalloc.h
apid/apid.h:
common/http.h:
apid/api_auth.h:
apid/api_devices.h:
apid/dev_store.h:
apid/api_fleet.h:
apid/api_lanes.h:
apid/api_seed.h:
apid/api_alerts.h:
apid/api_analytics.h:
apid/api_dash.h:
apid/api_prom.h:
apid/api_rules.h:
apid/api_telemetry.h:
apid/api_tenant.h:
apid/api_users.h:
apid/api_ws.h:
common/clock.h:
common/daemon.h:
common/cfg.h:
common/ep.h:
common/log.h:
common/mpjson.h:
common/reload.h:
common/rpc.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
