build-dev/obj/apid/dev_mqtt.o: apid/dev_mqtt.c apid/dev_mqtt.h \
 common/log.h common/ratelimit.h common/test.h common/xalloc.h
apid/dev_mqtt.h:
common/log.h:
common/ratelimit.h:
common/test.h:
common/xalloc.h:
