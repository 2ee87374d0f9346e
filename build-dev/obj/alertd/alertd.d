build-dev/obj/alertd/alertd.o: alertd/alertd.c alertd/alertd.h \
 alertd/alert_devices.h alertd/alert_engine.h alertd/alert_rule.h \
 common/schema.h alertd/alert_file.h alertd/alert_channel.h \
 alertd/alert_group.h alertd/alert_store.h alertd/alert_notify.h \
 alertd/alert_ruleset.h common/clock.h common/daemon.h common/cfg.h \
 common/ep.h common/log.h common/mpjson.h common/msg.h common/ratelimit.h \
 common/reading.h common/rpc.h common/series.h common/strutil.h \
 common/test.h common/xalloc.h
alertd/alertd.h:
alertd/alert_devices.h:
alertd/alert_engine.h:
alertd/alert_rule.h:
common/schema.h:
alertd/alert_file.h:
alertd/alert_channel.h:
alertd/alert_group.h:
alertd/alert_store.h:
alertd/alert_notify.h:
alertd/alert_ruleset.h:
common/clock.h:
common/daemon.h:
common/cfg.h:
common/ep.h:
common/log.h:
common/mpjson.h:
common/msg.h:
common/ratelimit.h:
common/reading.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
