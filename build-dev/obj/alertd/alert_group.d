build-dev/obj/alertd/alert_group.o: alertd/alert_group.c \
 alertd/alert_group.h alertd/alert_rule.h alertd/alert_store.h \
 alertd/alert_engine.h common/schema.h alertd/alert_notify.h \
 alertd/alert_channel.h common/clock.h common/log.h common/mpjson.h \
 common/test.h common/xalloc.h
alertd/alert_group.h:
alertd/alert_rule.h:
alertd/alert_store.h:
alertd/alert_engine.h:
common/schema.h:
alertd/alert_notify.h:
alertd/alert_channel.h:
common/clock.h:
common/log.h:
common/mpjson.h:
common/test.h:
common/xalloc.h:
