build-dev/obj/alertd/alert_sink_mqtt.o: alertd/alert_sink_mqtt.c \
 alertd/alert_sink_mqtt.h alertd/alert_channel.h alertd/alert_rule.h \
 common/clock.h common/series.h common/test.h
alertd/alert_sink_mqtt.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
common/clock.h:
common/series.h:
common/test.h:
