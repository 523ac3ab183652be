using System.Globalization;
using System.Text.Json;
using TorchSharp;

namespace LoraPS.Models;

/// <summary>The architectures LoraPS can build, named by Hugging Face <c>model_type</c>.</summary>
public enum ModelArchitecture
{
    Llama,
    Mistral,
    Qwen2,
    Gpt2,
    Bert,
    Roberta,
}

/// <summary>
/// A Hugging Face <c>config.json</c> reduced to the fields LoraPS uses, with each field normalised across the
/// spellings of the six supported architectures (GPT-2's <c>n_embd</c> is <see cref="HiddenSize"/>, and so on).
/// </summary>
/// <remarks>
/// Defaults follow each transformers config class (LlamaConfig, GPT2Config, …), so a config that omits a key behaves
/// as it does in transformers. The sizes that decide tensor shapes are the exception: a config without them is almost
/// certainly not a model directory, and guessing a 7B default would only move the error to the weights.
/// </remarks>
public sealed record ModelConfig
{
    /// <summary>Supported <c>model_type</c> values, in the order they are listed in error messages.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } =
        new[] { "llama", "mistral", "qwen2", "gpt2", "bert", "roberta" };

    public required ModelArchitecture Architecture { get; init; }
    public required string ModelType { get; init; }
    /// <summary>The <c>architectures</c> list, e.g. <c>LlamaForCausalLM</c>; empty when absent.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = Array.Empty<string>();

    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    /// <summary>Key/value heads for grouped-query attention; equals <see cref="NumAttentionHeads"/> without GQA.</summary>
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary><c>rms_norm_eps</c> (decoders), <c>layer_norm_epsilon</c> (GPT-2) or <c>layer_norm_eps</c> (encoders).</summary>
    public required double NormEpsilon { get; init; }
    public required string HiddenAct { get; init; }

    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>RoPE frequency scaling; null for plain RoPE (and for architectures without RoPE).</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>Mistral's attention window (keys farther back than this are masked); null for full attention.</summary>
    public int? SlidingWindow { get; init; }

    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v/o projections (Llama <c>attention_bias</c>); Qwen2 uses <see cref="QkvBias"/> instead.</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Qwen2's q/k/v projections always carry a bias, its o_proj never does.</summary>
    public bool QkvBias { get; init; }
    public bool MlpBias { get; init; }

    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence ids; <c>eos_token_id</c> may be a single id or a list (Llama-3 instruct).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();
    public int? PadTokenId { get; init; }

    /// <summary>Output size of a sequence-classification head (<c>num_labels</c>, else the size of id2label, else 2).</summary>
    public int NumLabels { get; init; } = 2;
    public IReadOnlyDictionary<int, string> Id2Label { get; init; } = new Dictionary<int, string>();
    /// <summary>HF <c>problem_type</c>: single_label_classification, multi_label_classification or regression; null = infer.</summary>
    public string? ProblemType { get; init; }
    public int TypeVocabSize { get; init; }

    /// <summary>Dropout probabilities, applied only in training mode (all 0 for Llama-family checkpoints).</summary>
    public double AttentionDropout { get; init; }
    public double HiddenDropout { get; init; }
    public double EmbeddingDropout { get; init; }
    /// <summary>Dropout before a classification head (BERT/RoBERTa <c>classifier_dropout</c>, else the hidden dropout).</summary>
    public double ClassifierDropout { get; init; }
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>GPT-2 only: divide scores by √head_dim (<c>scale_attn_weights</c>, normally true).</summary>
    public bool ScaleAttentionWeights { get; init; } = true;
    /// <summary>GPT-2 only: additionally divide scores by (layer index + 1).</summary>
    public bool ScaleAttentionByInverseLayerIndex { get; init; }

    /// <summary><c>torch_dtype</c> (transformers ≤ 4.x) or <c>dtype</c> (v5) as written, e.g. "bfloat16"; null when absent.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>The file this config was read from, for error messages; null when built in memory.</summary>
    public string? SourcePath { get; init; }

    /// <summary>True for the decoder-only architectures that have a causal LM head and a KV cache.</summary>
    public bool IsDecoder => Architecture is ModelArchitecture.Llama or ModelArchitecture.Mistral
        or ModelArchitecture.Qwen2 or ModelArchitecture.Gpt2;

    /// <summary><see cref="TorchDtype"/> as a TorchSharp type, or null when absent or not a float type torch knows.</summary>
    public torch.ScalarType? StoredScalarType => TorchDtype switch {
        "float32" or "float" => torch.ScalarType.Float32,
        "bfloat16" => torch.ScalarType.BFloat16,
        "float16" or "half" => torch.ScalarType.Float16,
        _ => null,
    };

    /// <summary>Reads and validates <c>config.json</c> (pass the file or the model directory).</summary>
    /// <exception cref="ModelConfigException">The file is missing, is not JSON, lacks a required key, or names an
    /// unsupported model_type or RoPE scaling.</exception>
    public static ModelConfig Load(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file))
            throw new ModelConfigException(file, $"'{file}' does not exist. A Hugging Face model directory must contain config.json.");
        return Parse(File.ReadAllText(file), file);
    }

    /// <summary>Parses config.json text. <paramref name="sourceName"/> names the file in error messages.</summary>
    public static ModelConfig Parse(string json, string sourceName = "config.json")
    {
        JsonDocument document;
        try {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        } catch (JsonException e) {
            throw new ModelConfigException(sourceName, $"'{sourceName}' is not valid JSON: {e.Message}", e);
        }
        using (document) {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelConfigException(sourceName, $"'{sourceName}' must hold a JSON object, found {document.RootElement.ValueKind}.");
            return new ConfigReader(document.RootElement, sourceName).Read();
        }
    }
}

/// <summary>
/// RoPE frequency scaling. Only the kinds that change <c>inv_freq</c> once, before any forward, are supported:
/// <c>linear</c> and <c>llama3</c> (Llama-3.1/3.2).
/// </summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1.0, double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>config.json is unusable; the message names the file and the key.</summary>
public sealed class ModelConfigException : Exception
{
    public ModelConfigException(string file, string message, Exception? inner = null) : base(message, inner) => FilePath = file;
    public string FilePath { get; }
}

/// <summary>Reads one config object, knowing which file it came from so every error can name it.</summary>
internal sealed class ConfigReader
{
    private readonly JsonElement _root;
    private readonly string _file;

    public ConfigReader(JsonElement root, string file) { _root = root; _file = file; }

    public ModelConfig Read()
    {
        var modelType = String("model_type") ?? throw Missing("model_type",
            $"It names the architecture; supported: {string.Join(", ", ModelConfig.SupportedModelTypes)}.");
        return modelType switch {
            "llama" => ReadDecoder(ModelArchitecture.Llama, modelType),
            "mistral" => ReadDecoder(ModelArchitecture.Mistral, modelType),
            "qwen2" => ReadDecoder(ModelArchitecture.Qwen2, modelType),
            "gpt2" => ReadGpt2(),
            "bert" => ReadEncoder(ModelArchitecture.Bert, modelType),
            "roberta" => ReadEncoder(ModelArchitecture.Roberta, modelType),
            _ => throw new ModelConfigException(_file,
                $"'{_file}': model_type '{modelType}' is not supported. Supported model types: {string.Join(", ", ModelConfig.SupportedModelTypes)}."),
        };
    }

    private ModelConfig ReadDecoder(ModelArchitecture arch, string modelType)
    {
        var hidden = RequiredInt("hidden_size");
        var heads = RequiredInt("num_attention_heads");
        var headDim = Int("head_dim") ?? DivideHeads(hidden, heads, "hidden_size");
        var (theta, scaling) = ReadRope();
        int? window = null;
        if (arch == ModelArchitecture.Mistral) {
            window = Int("sliding_window");
        } else if (arch == ModelArchitecture.Qwen2 && (Bool("use_sliding_window") ?? false)) {
            // Qwen2 switches the window on per layer (max_window_layers); no released Qwen2 checkpoint enables it.
            throw new ModelConfigException(_file, $"'{_file}': use_sliding_window=true is not supported yet for qwen2.");
        }
        return Common(arch, modelType) with {
            VocabSize = RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = RequiredInt("intermediate_size"),
            NumHiddenLayers = RequiredInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = KeyValueHeads(heads),
            HeadDim = headDim,
            MaxPositionEmbeddings = Int("max_position_embeddings") ?? (arch == ModelArchitecture.Mistral ? 4096 * 32 : arch == ModelArchitecture.Qwen2 ? 32768 : 2048),
            NormEpsilon = Double("rms_norm_eps") ?? 1e-6,
            HiddenAct = String("hidden_act") ?? "silu",
            RopeTheta = theta,
            RopeScaling = scaling,
            SlidingWindow = window,
            TieWordEmbeddings = Bool("tie_word_embeddings") ?? false,
            AttentionBias = arch == ModelArchitecture.Llama && (Bool("attention_bias") ?? false),
            QkvBias = arch == ModelArchitecture.Qwen2,
            MlpBias = arch == ModelArchitecture.Llama && (Bool("mlp_bias") ?? false),
            BosTokenId = OptionalInt("bos_token_id", 1),
            EosTokenIds = Eos(2),
            AttentionDropout = Double("attention_dropout") ?? 0.0,
        };
    }

    private ModelConfig ReadGpt2()
    {
        var hidden = RequiredInt("n_embd");
        var heads = RequiredInt("n_head");
        return Common(ModelArchitecture.Gpt2, "gpt2") with {
            VocabSize = RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int("n_inner") ?? 4 * hidden,
            NumHiddenLayers = RequiredInt("n_layer"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = DivideHeads(hidden, heads, "n_embd"),
            MaxPositionEmbeddings = Int("n_positions") ?? 1024,
            NormEpsilon = Double("layer_norm_epsilon") ?? 1e-5,
            HiddenAct = String("activation_function") ?? "gelu_new",
            TieWordEmbeddings = Bool("tie_word_embeddings") ?? true,
            BosTokenId = OptionalInt("bos_token_id", 50256),
            EosTokenIds = Eos(50256),
            AttentionDropout = Double("attn_pdrop") ?? 0.1,
            HiddenDropout = Double("resid_pdrop") ?? 0.1,
            EmbeddingDropout = Double("embd_pdrop") ?? 0.1,
            ClassifierDropout = Double("summary_first_dropout") ?? 0.1,
            ScaleAttentionWeights = Bool("scale_attn_weights") ?? true,
            ScaleAttentionByInverseLayerIndex = Bool("scale_attn_by_inverse_layer_idx") ?? false,
        };
    }

    private ModelConfig ReadEncoder(ModelArchitecture arch, string modelType)
    {
        var positionType = String("position_embedding_type") ?? "absolute";
        if (positionType != "absolute")
            throw new ModelConfigException(_file, $"'{_file}': position_embedding_type '{positionType}' is not supported yet; only 'absolute' is.");
        if (Bool("is_decoder") ?? false)
            throw new ModelConfigException(_file, $"'{_file}': is_decoder=true ({modelType} as a decoder with cross-attention) is not supported.");
        var hidden = RequiredInt("hidden_size");
        var heads = RequiredInt("num_attention_heads");
        var hiddenDropout = Double("hidden_dropout_prob") ?? 0.1;
        var roberta = arch == ModelArchitecture.Roberta;
        return Common(arch, modelType) with {
            VocabSize = RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = RequiredInt("intermediate_size"),
            NumHiddenLayers = RequiredInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = DivideHeads(hidden, heads, "hidden_size"),
            MaxPositionEmbeddings = Int("max_position_embeddings") ?? 512,
            NormEpsilon = Double("layer_norm_eps") ?? 1e-12,
            HiddenAct = String("hidden_act") ?? "gelu",
            TieWordEmbeddings = Bool("tie_word_embeddings") ?? true,
            TypeVocabSize = Int("type_vocab_size") ?? 2,
            BosTokenId = OptionalInt("bos_token_id", roberta ? 0 : null),
            EosTokenIds = Eos(roberta ? 2 : null),
            PadTokenId = OptionalInt("pad_token_id", roberta ? 1 : 0),
            AttentionDropout = Double("attention_probs_dropout_prob") ?? 0.1,
            HiddenDropout = hiddenDropout,
            EmbeddingDropout = hiddenDropout,
            ClassifierDropout = Double("classifier_dropout") ?? hiddenDropout,
        };
    }

    /// <summary>Fields every architecture shares; the required sizes are filled in by the caller.</summary>
    private ModelConfig Common(ModelArchitecture arch, string modelType)
    {
        var id2label = Id2Label();
        return new ModelConfig {
            Architecture = arch,
            ModelType = modelType,
            Architectures = StringList("architectures"),
            VocabSize = 0, HiddenSize = 0, IntermediateSize = 0, NumHiddenLayers = 0, NumAttentionHeads = 0,
            NumKeyValueHeads = 0, HeadDim = 0, MaxPositionEmbeddings = 0, NormEpsilon = 0, HiddenAct = "",
            TieWordEmbeddings = true,
            PadTokenId = OptionalInt("pad_token_id", null),
            NumLabels = Int("num_labels") ?? (id2label.Count > 0 ? id2label.Count : 2),
            Id2Label = id2label,
            ProblemType = String("problem_type"),
            InitializerRange = Double("initializer_range") ?? 0.02,
            TorchDtype = String("torch_dtype") ?? String("dtype"),
            SourcePath = _file,
        };
    }

    private int KeyValueHeads(int heads)
    {
        var kv = Int("num_key_value_heads") ?? heads;
        if (kv <= 0 || heads % kv != 0)
            throw new ModelConfigException(_file, $"'{_file}': num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv}).");
        return kv;
    }

    private int DivideHeads(int hidden, int heads, string hiddenKey)
    {
        if (heads <= 0 || hidden % heads != 0)
            throw new ModelConfigException(_file, $"'{_file}': {hiddenKey} ({hidden}) is not divisible by the number of heads ({heads}); give head_dim explicitly.");
        return hidden / heads;
    }

    /// <summary>
    /// rope_theta and rope_scaling, from any of the three spellings: top-level <c>rope_theta</c> + <c>rope_scaling</c>
    /// with <c>rope_type</c>, older <c>rope_scaling.type</c>, or transformers v5's combined <c>rope_parameters</c>.
    /// </summary>
    private (double Theta, RopeScaling? Scaling) ReadRope()
    {
        var theta = Double("rope_theta");
        JsonElement? scaling = Object("rope_scaling");
        var scalingKey = "rope_scaling";
        if (Object("rope_parameters") is { } parameters) {
            scalingKey = "rope_parameters";
            scaling = parameters;
            if (parameters.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number)
                theta ??= t.GetDouble();
        }
        return (theta ?? 10000.0, scaling is { } s ? ReadRopeScaling(s, scalingKey) : null);
    }

    private RopeScaling? ReadRopeScaling(JsonElement s, string key)
    {
        var type = (s.TryGetProperty("rope_type", out var rt) ? rt.GetString() : null)
                   ?? (s.TryGetProperty("type", out var t) ? t.GetString() : null)
                   ?? "default";
        double Num(string name, double? fallback)
        {
            if (s.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number) return v.GetDouble();
            return fallback ?? throw Missing($"{key}.{name}", $"rope type '{type}' needs it.");
        }
        return type switch {
            "default" => null,
            "linear" => new RopeScaling("linear", Num("factor", null)),
            "llama3" => new RopeScaling("llama3", Num("factor", null), Num("low_freq_factor", null), Num("high_freq_factor", null),
                (int)Num("original_max_position_embeddings", null)),
            "dynamic" or "yarn" or "longrope" or "su" or "dynamic_ntk" =>
                throw new ModelConfigException(_file, $"'{_file}': {key} type '{type}' is not supported yet (supported: linear, llama3)."),
            _ => throw new ModelConfigException(_file, $"'{_file}': unknown {key} type '{type}' (supported: linear, llama3)."),
        };
    }

    private IReadOnlyList<int> Eos(int? fallback)
    {
        if (!_root.TryGetProperty("eos_token_id", out var v)) return fallback is { } f ? new[] { f } : Array.Empty<int>();
        return v.ValueKind switch {
            JsonValueKind.Null => Array.Empty<int>(),
            JsonValueKind.Number => new[] { AsInt(v, "eos_token_id") },
            JsonValueKind.Array => v.EnumerateArray().Select(e => AsInt(e, "eos_token_id")).ToArray(),
            _ => throw WrongType("eos_token_id", "an integer or a list of integers", v),
        };
    }

    private IReadOnlyDictionary<int, string> Id2Label()
    {
        var result = new Dictionary<int, string>();
        if (Object("id2label") is not { } map) return result;
        foreach (var entry in map.EnumerateObject()) {
            if (!int.TryParse(entry.Name, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id))
                throw new ModelConfigException(_file, $"'{_file}': id2label key '{entry.Name}' is not an integer.");
            result[id] = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : entry.Value.ToString();
        }
        return result;
    }

    private int? OptionalInt(string name, int? fallback) =>
        _root.TryGetProperty(name, out var v) ? (v.ValueKind == JsonValueKind.Null ? null : AsInt(v, name)) : fallback;

    private int RequiredInt(string name) => Int(name) ?? throw Missing(name, "It sets tensor shapes and has no safe default.");

    private int? Int(string name) =>
        _root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? AsInt(v, name) : null;

    private int AsInt(JsonElement v, string name)
    {
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
        // Some exporters write integral floats ("hidden_size": 64.0).
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue) return (int)d;
        throw WrongType(name, "an integer", v);
    }

    private double? Double(string name)
    {
        if (!_root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw WrongType(name, "a number", v);
    }

    private bool? Bool(string name)
    {
        if (!_root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(name, "true or false", v),
        };
    }

    private string? String(string name)
    {
        if (!_root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw WrongType(name, "a string", v);
    }

    private IReadOnlyList<string> StringList(string name)
    {
        if (!_root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return Array.Empty<string>();
        if (v.ValueKind != JsonValueKind.Array) throw WrongType(name, "a list of strings", v);
        return v.EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
    }

    private JsonElement? Object(string name)
    {
        if (!_root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Object ? v : throw WrongType(name, "an object", v);
    }

    private ModelConfigException Missing(string key, string why) =>
        new(_file, $"'{_file}' has no '{key}'. {why}");

    private ModelConfigException WrongType(string key, string expected, JsonElement found) =>
        new(_file, $"'{_file}': '{key}' must be {expected}, found {found.ValueKind} {found.GetRawText()}.");
}
