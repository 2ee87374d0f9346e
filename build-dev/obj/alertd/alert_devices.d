build-dev/obj/alertd/alert_devices.o: alertd/alert_devices.c \
 alertd/alert_devices.h alertd/alert_engine.h alertd/alert_rule.h \
 common/schema.h common/log.h common/rpc.h common/test.h common/xalloc.h
alertd/alert_devices.h:
alertd/alert_engine.h:
alertd/alert_rule.h:
common/schema.h:
common/log.h:
common/rpc.h:
common/test.h:
common/xalloc.h:
