build-dev/obj/apid/api_devices.o: apid/api_devices.c apid/api_devices.h \
 apid/apid.h common/http.h apid/dev_store.h apid/api_auth.h apid/api_ws.h \
 apid/dev_creds.h apid/dev_jobs.h apid/dev_mqtt.h apid/dev_shadow.h \
 apid/dev_state.h common/clock.h common/daemon.h common/cfg.h \
 common/log.h common/quota.h common/rpc.h common/strutil.h common/test.h \
 common/xalloc.h
apid/api_devices.h:
apid/apid.h:
common/http.h:
apid/dev_store.h:
apid/api_auth.h:
apid/api_ws.h:
apid/dev_creds.h:
apid/dev_jobs.h:
apid/dev_mqtt.h:
apid/dev_shadow.h:
apid/dev_state.h:
common/clock.h:
common/daemon.h:
common/cfg.h:
common/log.h:
common/quota.h:
common/rpc.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
