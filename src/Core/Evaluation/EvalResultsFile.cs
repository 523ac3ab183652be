using System.Text.Json;
using System.Text.Json.Nodes;
using LoraPS.Training;

namespace LoraPS.Evaluation;

/// <summary>
/// Writes lm-eval's results JSON (<c>simple_evaluate</c> / <c>--output_path</c>, spec notes §4.6): <c>results</c> with
/// <c>"acc,none"</c> / <c>"acc_stderr,none"</c> keys ("N/A" without a standard error), <c>configs</c>, <c>versions</c>,
/// <c>n-shot</c>, <c>higher_is_better</c>, <c>n-samples</c>, <c>config</c> and run details — written atomically.
/// </summary>
public static class EvalResultsFile
{
    /// <summary>Builds the JSON document for one model (and adapter) run.</summary>
    public static JsonObject Build(IReadOnlyList<TaskResult> results, string modelName, string modelPath, string adapter,
        EvaluationOptions options, int maxLength, DateTimeOffset start, DateTimeOffset end)
    {
        var resultsNode = new JsonObject();
        var configs = new JsonObject();
        var versions = new JsonObject();
        var nShot = new JsonObject();
        var higher = new JsonObject();
        var samples = new JsonObject();
        foreach (var r in results)
        {
            var entry = new JsonObject { ["alias"] = r.Task };
            var better = new JsonObject();
            foreach (var m in r.Metrics)
            {
                entry[$"{m.Name},{m.Filter}"] = Number(m.Value);
                entry[$"{m.Name}_stderr,{m.Filter}"] = m.Stderr is double se ? Number(se) : JsonValue.Create("N/A");
                better[m.Name] = m.HigherIsBetter;
            }
            resultsNode[r.Task] = entry;
            configs[r.Task] = JsonSerializer.SerializeToNode(r.Config);
            versions[r.Task] = r.Version;
            nShot[r.Task] = r.NumFewshot;
            higher[r.Task] = better;
            samples[r.Task] = new JsonObject { ["original"] = r.NOriginal, ["effective"] = r.N };
        }
        return new JsonObject
        {
            ["results"] = resultsNode,
            ["group_subtasks"] = new JsonObject(results.Select(r => KeyValuePair.Create(r.Task, (JsonNode?)new JsonArray()))),
            ["configs"] = configs,
            ["versions"] = versions,
            ["n-shot"] = nShot,
            ["higher_is_better"] = higher,
            ["n-samples"] = samples,
            ["config"] = new JsonObject
            {
                ["model"] = "loraps",
                ["model_args"] = $"pretrained={modelPath}" + (adapter == EvalResult.BaseAdapter ? "" : $",adapter={adapter}"),
                ["batch_size"] = options.BatchSize,
                ["limit"] = options.Limit,
                ["bootstrap_iters"] = options.BootstrapIterations,
                ["add_special_tokens"] = options.AddSpecialTokens,
            },
            ["date"] = start.ToUnixTimeMilliseconds() / 1000.0,
            ["model_source"] = "loraps",
            ["model_name"] = modelName,
            ["adapter"] = adapter,
            ["max_length"] = maxLength,
            ["lm_eval_version"] = null,
            ["loraps_version"] = RunFolder.VersionOf(typeof(EvalResultsFile).Assembly),
            ["start_time"] = start.ToUnixTimeMilliseconds() / 1000.0,
            ["end_time"] = end.ToUnixTimeMilliseconds() / 1000.0,
            ["total_evaluation_time_seconds"] = ((end - start).TotalSeconds).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    static JsonNode? Number(double value) => double.IsFinite(value) ? JsonValue.Create(value) : null;

    /// <summary>Writes <paramref name="document"/> to <paramref name="path"/> (temporary file, then rename).</summary>
    public static void Write(string path, JsonObject document)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        RunFolder.WriteAtomically(path, document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
