// Prometheus text exposition format 0.0.4: families with # HELP / # TYPE, label values escaped.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/metrics/histogram.h"

namespace loopguard::metrics {

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class PrometheusWriter {
 public:
  explicit PrometheusWriter(std::string& out) : out_(out) {}

  // Starts a metric family; call once per family before its samples.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, Labels labels, double value);
  void sample(std::string_view name, Labels labels, uint64_t value);
  // _bucket (cumulative, le=...), _sum and _count of one labelled histogram.
  void histogram(std::string_view name, Labels labels, const Histogram& h);

 private:
  void labels(Labels labels, std::string_view extra_name = {}, std::string_view extra_value = {});
  std::string& out_;
};

std::string formatDouble(double v);

}  // namespace loopguard::metrics
