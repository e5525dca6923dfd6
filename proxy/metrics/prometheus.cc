#include "proxy/metrics/prometheus.h"

#include <cmath>
#include <cstdio>

namespace loopguard::metrics {

std::string formatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  // 15 significant digits: a Unix time (process_start_time_seconds) keeps its fraction.
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void PrometheusWriter::labels(Labels labels, std::string_view extra_name,
                              std::string_view extra_value) {
  if (labels.size() == 0 && extra_name.empty()) return;
  out_.push_back('{');
  bool first = true;
  auto one = [&](std::string_view k, std::string_view v) {
    if (!first) out_.push_back(',');
    first = false;
    out_.append(k).append("=\"");
    for (char c : v) {
      if (c == '\\' || c == '"') {
        out_.push_back('\\');
        out_.push_back(c);
      } else if (c == '\n') {
        out_.append("\\n");
      } else {
        out_.push_back(c);
      }
    }
    out_.push_back('"');
  };
  for (const auto& [k, v] : labels) one(k, v);
  if (!extra_name.empty()) one(extra_name, extra_value);
  out_.push_back('}');
}

void PrometheusWriter::sample(std::string_view name, Labels l, double value) {
  out_.append(name);
  labels(l);
  out_.push_back(' ');
  out_.append(formatDouble(value));
  out_.push_back('\n');
}

void PrometheusWriter::sample(std::string_view name, Labels l, uint64_t value) {
  out_.append(name);
  labels(l);
  out_.push_back(' ');
  out_.append(std::to_string(value));
  out_.push_back('\n');
}

void PrometheusWriter::histogram(std::string_view name, Labels l, const Histogram& h) {
  std::string bucket_name = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= Histogram::kBounds.size(); ++i) {
    cumulative += h.bucket(i);
    std::string le = i < Histogram::kBounds.size() ? formatDouble(Histogram::kBounds[i]) : "+Inf";
    out_.append(bucket_name);
    labels(l, "le", le);
    out_.push_back(' ');
    out_.append(std::to_string(cumulative));
    out_.push_back('\n');
  }
  sample(std::string(name) + "_sum", l, h.sum());
  sample(std::string(name) + "_count", l, h.count());
}

}  // namespace loopguard::metrics
