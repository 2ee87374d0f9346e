build-dev/obj/apid/api_auth.o: apid/api_auth.c apid/api_auth.h \
 apid/apid.h common/http.h apid/api_devices.h apid/dev_store.h \
 apid/api_jwks.h apid/api_jwt.h apid/api_users.h apid/dev_creds.h \
 apid/dev_state.h common/apikey.h common/clock.h common/log.h \
 common/rpc.h common/test.h common/xalloc.h
apid/api_auth.h:
apid/apid.h:
common/http.h:
apid/api_devices.h:
apid/dev_store.h:
apid/api_jwks.h:
apid/api_jwt.h:
apid/api_users.h:
apid/dev_creds.h:
apid/dev_state.h:
common/apikey.h:
common/clock.h:
common/log.h:
common/rpc.h:
common/test.h:
common/xalloc.h:
