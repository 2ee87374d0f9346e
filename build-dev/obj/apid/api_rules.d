build-dev/obj/apid/api_rules.o: apid/api_rules.c apid/api_rules.h \
 apid/apid.h common/http.h apid/api_devices.h apid/dev_store.h \
 apid/dev_creds.h apid/dev_state.h common/clock.h common/ep.h \
 common/log.h common/rpc.h common/strutil.h common/test.h common/xalloc.h
apid/api_rules.h:
apid/apid.h:
common/http.h:
apid/api_devices.h:
apid/dev_store.h:
apid/dev_creds.h:
apid/dev_state.h:
common/clock.h:
common/ep.h:
common/log.h:
common/rpc.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
