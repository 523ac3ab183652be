using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LoraPS.Adapters;

/// <summary>
/// Reads and writes PEFT's <c>adapter_config.json</c> for LoRA adapters.
/// </summary>
/// <remarks>
/// <para>
/// Writing reproduces <c>PeftConfig.save_pretrained</c>: <c>json.dumps(asdict(config), indent=2, sort_keys=True)</c>,
/// no trailing newline, with exactly the key set of PEFT <see cref="PeftFieldSetVersion"/> (the features LoraPS does
/// not implement are written with PEFT's null/empty defaults). <c>inference_mode</c> is written true, as PEFT does
/// when saving. <c>target_modules</c> is written resolved and sorted (PEFT writes a Python set, whose order is
/// arbitrary).
/// </para>
/// <para>
/// Reading accepts any PEFT version's file: unknown keys are ignored and missing keys take PEFT's defaults
/// (r 8, lora_alpha 8, lora_dropout 0.0), which differ from a new <see cref="LoraConfig"/>'s. Features that change
/// how the model is built (layer replication, trainable tokens, target parameters, QALoRA, aLoRA, Arrow) are refused
/// rather than silently dropped.
/// </para>
/// </remarks>
public static class PeftAdapterConfig
{
    /// <summary>PEFT's <c>CONFIG_NAME</c>.</summary>
    public const string FileName = "adapter_config.json";

    /// <summary>The PEFT release whose <c>LoraConfig</c> field set the writer reproduces; written as <c>peft_version</c>.</summary>
    public const string PeftFieldSetVersion = "0.18.1";

    /// <summary>
    /// Reads <paramref name="path"/>: an <c>adapter_config.json</c> or a directory holding one.
    /// </summary>
    /// <exception cref="FileNotFoundException">No config file there.</exception>
    /// <exception cref="InvalidDataException">The JSON is malformed, a value has the wrong type, or it is not a LoRA config.</exception>
    /// <exception cref="NotSupportedException">The config uses a PEFT feature LoraPS does not implement.</exception>
    public static LoraConfig Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        if (!File.Exists(file))
            throw new FileNotFoundException($"No PEFT adapter config at '{file}'. A PEFT adapter directory holds {FileName} and adapter_model.safetensors.", file);
        return Parse(File.ReadAllText(file), file);
    }

    /// <summary>Parses the text of an <c>adapter_config.json</c>; <paramref name="source"/> names it in error messages.</summary>
    public static LoraConfig Parse(string json, string source = FileName)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false }) as JsonObject
                ?? throw new InvalidDataException($"{source}: the top level must be a JSON object.");
            _ = root.Count; // JsonObject is built lazily; duplicate keys surface here
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{source} is not valid JSON: {e.Message}", e);
        }
        return new Reader(root, source).ToConfig();
    }

    /// <summary>
    /// Writes <paramref name="config"/> to <paramref name="path"/> (a file, or a directory that gets
    /// <see cref="FileName"/>). Use the config of a <see cref="LoraResolution"/> so that targets are concrete.
    /// </summary>
    public static void Write(string path, LoraConfig config)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        File.WriteAllText(file, ToJson(config));
    }

    /// <summary>The exact text PEFT would write for <paramref name="config"/>.</summary>
    /// <exception cref="InvalidOperationException">The targets are unset or <c>"all-linear"</c>; resolve them first.</exception>
    public static string ToJson(LoraConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (config.TargetModules is null || config.TargetModules.Kind == ModuleSelectionKind.AllLinear)
            throw new InvalidOperationException($"Cannot write {FileName} while TargetModules is {(config.TargetModules is null ? "unset" : "'all-linear'")}: PEFT saves the resolved module names. Write LoraConfig.Resolve(...).Config instead.");

        var fields = new Dictionary<string, object?>
        {
            ["alora_invocation_tokens"] = null,
            ["alpha_pattern"] = config.AlphaPattern.ToDictionary(kv => kv.Key, kv => PythonNumber(kv.Value)),
            ["arrow_config"] = null,
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = config.BaseModelNameOrPath,
            ["bias"] = config.Bias.ToPeftName(),
            ["corda_config"] = null,
            ["ensure_weight_tying"] = false,
            ["eva_config"] = null,
            ["exclude_modules"] = SelectionValue(config.ExcludeModules),
            ["fan_in_fan_out"] = config.FanInFanOut,
            ["inference_mode"] = true,
            ["init_lora_weights"] = config.Init.ToPeftValue(),
            ["layer_replication"] = null,
            ["layers_pattern"] = config.LayersPattern is { Count: 1 } one ? one[0] : config.LayersPattern?.ToList(),
            ["layers_to_transform"] = config.LayersToTransform?.ToList(),
            ["loftq_config"] = new Dictionary<string, object?>(),
            ["lora_alpha"] = PythonNumber(config.Alpha),
            ["lora_bias"] = config.LoraBias,
            ["lora_dropout"] = config.Dropout,
            ["megatron_config"] = null,
            ["megatron_core"] = "megatron.core",
            ["modules_to_save"] = config.ModulesToSave?.ToList(),
            ["peft_type"] = "LORA",
            ["peft_version"] = PeftFieldSetVersion,
            ["qalora_group_size"] = 16,
            ["r"] = config.Rank,
            ["rank_pattern"] = config.RankPattern.ToDictionary(kv => kv.Key, kv => (object?)kv.Value),
            ["revision"] = config.Revision,
            ["target_modules"] = SelectionValue(config.TargetModules),
            ["target_parameters"] = null,
            ["task_type"] = config.TaskType?.ToPeftName(),
            ["trainable_token_indices"] = null,
            ["use_dora"] = config.UseDora,
            ["use_qalora"] = false,
            ["use_rslora"] = config.UseRsLora,
        };
        return PythonJson.Dumps(fields);
    }

    /// <summary>The keys <see cref="ToJson"/> writes, sorted.</summary>
    public static IReadOnlyList<string> WrittenKeys { get; } =
    [
        "alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping", "base_model_name_or_path", "bias",
        "corda_config", "ensure_weight_tying", "eva_config", "exclude_modules", "fan_in_fan_out", "inference_mode",
        "init_lora_weights", "layer_replication", "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha",
        "lora_bias", "lora_dropout", "megatron_config", "megatron_core", "modules_to_save", "peft_type", "peft_version",
        "qalora_group_size", "r", "rank_pattern", "revision", "target_modules", "target_parameters", "task_type",
        "trainable_token_indices", "use_dora", "use_qalora", "use_rslora",
    ];

    static object? SelectionValue(ModuleSelection? selection) => selection?.Kind switch
    {
        null => null,
        ModuleSelectionKind.Names => selection.ModuleNames.Order(StringComparer.Ordinal).ToList(),
        ModuleSelectionKind.Regex => selection.Pattern,
        _ => ModuleSelection.AllLinearShorthand,
    };

    /// <summary>PEFT types lora_alpha as int: write integral values without ".0", as Python would for an int.</summary>
    static object PythonNumber(double value) =>
        value == Math.Floor(value) && Math.Abs(value) < 1e15 ? (object)(long)value : value;

    /// <summary>Typed access to the JSON object with messages that name the file and key.</summary>
    sealed class Reader(JsonObject root, string source)
    {
        public LoraConfig ToConfig()
        {
            var peftType = String("peft_type");
            if (peftType is not null && peftType != "LORA")
                throw new InvalidDataException($"{source}: peft_type is '{peftType}', but only LoRA adapters (peft_type \"LORA\") can be loaded here.");
            RefuseUnsupported();

            try
            {
                return new LoraConfig
                {
                    Rank = Int("r") ?? 8,
                    Alpha = Number("lora_alpha") ?? 8,
                    Dropout = Number("lora_dropout") ?? 0.0,
                    TargetModules = Selection("target_modules"),
                    ExcludeModules = Selection("exclude_modules"),
                    LayersToTransform = IntOrIntList("layers_to_transform"),
                    LayersPattern = StringOrStringList("layers_pattern"),
                    RankPattern = Pattern("rank_pattern", n => checked((int)IntegerValue(n, "rank_pattern"))),
                    AlphaPattern = Pattern("alpha_pattern", n => NumberValue(n, "alpha_pattern")),
                    Bias = String("bias") is { } bias ? PeftNames.ParseBias(bias) : LoraBiasMode.None,
                    ModulesToSave = StringList("modules_to_save"),
                    Init = InitLoraWeights(),
                    UseRsLora = Bool("use_rslora") ?? false,
                    UseDora = Bool("use_dora") ?? false,
                    FanInFanOut = Bool("fan_in_fan_out") ?? false,
                    LoraBias = Bool("lora_bias") ?? false,
                    TaskType = String("task_type") is { } task ? PeftNames.ParseTaskType(task) : null,
                    BaseModelNameOrPath = String("base_model_name_or_path"),
                    Revision = String("revision"),
                };
            }
            catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
            {
                throw new InvalidDataException($"{source}: {e.Message}", e);
            }
        }

        void RefuseUnsupported()
        {
            string[] structural = ["layer_replication", "target_parameters", "trainable_token_indices", "alora_invocation_tokens", "arrow_config"];
            foreach (var key in structural)
            {
                if (root[key] is { } node && !IsEmpty(node))
                    throw new NotSupportedException($"{source}: '{key}' is set, a PEFT feature that changes how the model is built and that LoraPS does not implement.");
            }
            if (Bool("use_qalora") == true)
                throw new NotSupportedException($"{source}: use_qalora is true; QALoRA adapters are not supported.");
        }

        static bool IsEmpty(JsonNode node) => node switch
        {
            JsonArray a => a.Count == 0,
            JsonObject o => o.Count == 0,
            _ => false,
        };

        JsonNode? Get(string key) => root.TryGetPropertyValue(key, out var node) ? node : null;

        Exception WrongType(string key, string expected, JsonNode node) =>
            new InvalidDataException($"{source}: '{key}' must be {expected}, but is {node.GetValueKind().ToString().ToLowerInvariant()} {node.ToJsonString()}.");

        string? String(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            var n => throw WrongType(key, "a string or null", n),
        };

        bool? Bool(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
            var n => throw WrongType(key, "true or false", n),
        };

        int? Int(string key) => Get(key) is { } n ? checked((int)IntegerValue(n, key)) : null;

        double? Number(string key) => Get(key) is { } n ? NumberValue(n, key) : null;

        long IntegerValue(JsonNode node, string key)
        {
            if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
            {
                var d = v.GetValue<double>();
                if (d == Math.Floor(d) && Math.Abs(d) < 1e15) return (long)d;
            }
            throw WrongType(key, "an integer", node);
        }

        double NumberValue(JsonNode node, string key) =>
            node is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : throw WrongType(key, "a number", node);

        ModuleSelection? Selection(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => ModuleSelection.FromString(v.GetValue<string>()),
            JsonArray a => ModuleSelection.Names(StringItems(a, key)),
            var n => throw WrongType(key, "a list of module names, a regular expression string, or null", n),
        };

        IReadOnlyList<string>? StringList(string key) => Get(key) switch
        {
            null => null,
            JsonArray a => StringItems(a, key),
            var n => throw WrongType(key, "a list of strings or null", n),
        };

        IReadOnlyList<string>? StringOrStringList(string key) => Get(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => [v.GetValue<string>()],
            JsonArray a => StringItems(a, key),
            var n => throw WrongType(key, "a string, a list of strings, or null", n),
        };

        IReadOnlyList<int>? IntOrIntList(string key) => Get(key) switch
        {
            null => null,
            JsonArray a => a.Select(item => item is null ? throw WrongType(key, "a list of integers", a) : checked((int)IntegerValue(item, key))).ToArray(),
            var n => [checked((int)IntegerValue(n, key))],
        };

        string[] StringItems(JsonArray array, string key) =>
            array.Select(item => item is JsonValue v && v.GetValueKind() == JsonValueKind.String
                ? v.GetValue<string>()
                : throw WrongType(key, "a list of strings", array)).ToArray();

        IReadOnlyDictionary<string, T> Pattern<T>(string key, Func<JsonNode, T> value) => Get(key) switch
        {
            null => new Dictionary<string, T>(),
            JsonObject o => o.ToDictionary(
                kv => kv.Key,
                kv => kv.Value is null ? throw WrongType(key, "an object of numbers", o) : value(kv.Value),
                StringComparer.Ordinal),
            var n => throw WrongType(key, "an object mapping module patterns to numbers", n),
        };

        LoraInit InitLoraWeights() => Get("init_lora_weights") switch
        {
            null => LoraInit.Default,
            JsonValue v when v.GetValueKind() == JsonValueKind.True => LoraInit.Default,
            JsonValue v when v.GetValueKind() == JsonValueKind.False => LoraInit.Random,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => LoraInit.Parse(v.GetValue<string>()),
            var n => throw WrongType("init_lora_weights", "true, false or an init name such as \"gaussian\"", n),
        };
    }
}
