using System.Collections;
using System.Management.Automation;
using LoraPS.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Creates LoRA configurations (PEFT LoraConfig), one per combination of -Rank, -Alpha and -Dropout.</summary>
/// <remarks>
/// <para>
/// New-LoraConfig builds the settings Add-LoraAdapter needs: which layers get adapters (-TargetModules), their rank
/// and alpha, dropout, initialisation and variants (rsLoRA, DoRA). Unset values take PEFT's defaults: r 8,
/// alpha 16, dropout 0.05, no bias, the architecture's default target modules.
/// </para>
/// <para>
/// -TargetModules takes a list of module names (matched against a module's full path or its last dotted segments,
/// e.g. q_proj or self_attn.q_proj), or one string that is 'all-linear' (every linear layer but the output head) or a
/// Python regular expression that must match the whole path. Several values for -Rank, -Alpha or -Dropout give a
/// grid of configurations, one per combination, for hyperparameter sweeps. Invalid values stop the command with an
/// InvalidArgument error that says what is allowed.
/// </para>
/// </remarks>
/// <example>The usual attention-only config
/// <code>$config = New-LoraConfig -Rank 16 -Alpha 32 -TargetModules q_proj, v_proj</code>
/// <para>Adapters on the query and value projections with scaling alpha/r = 2.</para>
/// </example>
/// <example>All linear layers with DoRA
/// <code>New-LoraConfig -TargetModules all-linear -UseDora</code>
/// <para>Every linear layer except lm_head gets a weight-decomposed adapter.</para>
/// </example>
/// <example>A sweep grid
/// <code>New-LoraConfig -Rank 4, 8, 16 -Alpha 16, 32 | ForEach-Object { "r=$($_.Rank) alpha=$($_.Alpha)" }</code>
/// <para>Six configurations, one per (rank, alpha) pair.</para>
/// </example>
[Cmdlet(VerbsCommon.New, "LoraConfig")]
[OutputType(typeof(LoraConfig))]
public sealed class NewLoraConfigCommand : LoraCmdlet
{
    /// <summary>LoRA rank r (at least 1); several values make a grid.</summary>
    /// <value>Default: 8.</value>
    [Parameter(Position = 0)]
    [ValidateNotNullOrEmpty]
    public int[]? Rank { get; set; }

    /// <summary>LoRA alpha (positive); the update is scaled by alpha/r. Several values make a grid.</summary>
    /// <value>Default: 16.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public double[]? Alpha { get; set; }

    /// <summary>Dropout probability on the adapter input, in [0, 1). Several values make a grid.</summary>
    /// <value>Default: 0.05.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public double[]? Dropout { get; set; }

    /// <summary>
    /// The layers that get adapters: module names (q_proj, v_proj), or one string that is 'all-linear' or a regular
    /// expression matching whole module paths. Default: the architecture's PEFT default (q_proj, v_proj for Llama).
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? TargetModules { get; set; }

    /// <summary>Layers never to adapt: module names, or one regular expression.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? ExcludeModules { get; set; }

    /// <summary>Adapt only these decoder layer indices (0-based); needs -TargetModules as a list of names.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public int[]? LayersToTransform { get; set; }

    /// <summary>Per-module ranks: keys are regular expressions matched against the end of the module path, e.g. @{ 'v_proj' = 16 }. The first
    /// matching key wins, so use an [ordered] hashtable when keys overlap.</summary>
    [Parameter]
    public IDictionary? RankPattern { get; set; }

    /// <summary>Per-module alphas, keyed like -RankPattern.</summary>
    [Parameter]
    public IDictionary? AlphaPattern { get; set; }

    /// <summary>Which biases are trained and saved with the adapter: none (default), all, or lora_only.</summary>
    [Parameter]
    [ValidateSet("none", "all", "lora_only")]
    public string Bias { get; set; } = "none";

    /// <summary>Modules trained and saved in full besides the adapters, e.g. a classifier head.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? ModulesToSave { get; set; }

    /// <summary>
    /// How the adapter starts: Default (A Kaiming-uniform, B zero, so the model starts unchanged), Gaussian, PiSSA or
    /// OLoRA (these two rewrite the base weights from its SVD/QR).
    /// </summary>
    [Parameter]
    [ValidateSet("Default", "Gaussian", "PiSSA", "OLoRA")]
    public string Init { get; set; } = "Default";

    /// <summary>Scale by alpha/√r (rank-stabilised LoRA) instead of alpha/r.</summary>
    [Parameter]
    public SwitchParameter UseRsLora { get; set; }

    /// <summary>Use DoRA: weight-decomposed LoRA with a trained magnitude per output feature.</summary>
    [Parameter]
    public SwitchParameter UseDora { get; set; }

    /// <summary>PEFT's task_type. Default: taken from the model's head when the adapter is added.</summary>
    [Parameter]
    public PeftTaskType TaskType { get; set; }

    protected override void EndProcessing()
    {
        var template = RunEngine(_ => BuildTemplate());
        int[] ranks = Rank ?? [template.Rank];
        double[] alphas = Alpha ?? [template.Alpha];
        double[] dropouts = Dropout ?? [template.Dropout];
        // Every value is checked before the first config is written, so a bad grid writes nothing.
        var grid = RunEngine(_ =>
            (from r in ranks from a in alphas from d in dropouts select template with { Rank = r, Alpha = a, Dropout = d }).ToList());
        foreach (var config in grid) WriteObject(config);
    }

    LoraConfig BuildTemplate()
    {
        var config = new LoraConfig
        {
            TargetModules = Selection(TargetModules),
            ExcludeModules = Selection(ExcludeModules),
            LayersToTransform = LayersToTransform,
            RankPattern = Pattern(RankPattern, nameof(RankPattern), v => LanguagePrimitives.ConvertTo<int>(v)),
            AlphaPattern = Pattern(AlphaPattern, nameof(AlphaPattern), v => LanguagePrimitives.ConvertTo<double>(v)),
            Bias = PeftNames.ParseBias(Bias),
            ModulesToSave = ModulesToSave,
            Init = Init switch
            {
                "Gaussian" => LoraInit.Gaussian,
                "PiSSA" => LoraInit.PiSSA,
                "OLoRA" => LoraInit.OLoRA,
                _ => LoraInit.Default,
            },
            UseRsLora = UseRsLora,
            UseDora = UseDora,
            TaskType = MyInvocation.BoundParameters.ContainsKey(nameof(TaskType)) ? TaskType : null,
        };
        config.Validate();
        return config;
    }

    /// <summary>
    /// One string is PEFT's str form ('all-linear' or a regex), several are a list of names. A single plain name
    /// (letters, digits, '_' and '.') is taken as a list of one: as a whole-path regex it could never match a nested
    /// module, which is never what someone typing -TargetModules q_proj means.
    /// </summary>
    static ModuleSelection? Selection(string[]? values) => values switch
    {
        null => null,
        [var single] when PlainName.IsMatch(single) => ModuleSelection.Names(single),
        [var single] => ModuleSelection.FromString(single),
        _ => ModuleSelection.Names(values),
    };

    static readonly System.Text.RegularExpressions.Regex PlainName = new(@"^[A-Za-z0-9_.]+$");

    static Dictionary<string, T> Pattern<T>(IDictionary? table, string parameter, Func<object, T> convert)
    {
        var result = new Dictionary<string, T>(StringComparer.Ordinal);
        if (table is null) return result;
        foreach (DictionaryEntry entry in table)
        {
            var key = entry.Key?.ToString();
            if (string.IsNullOrEmpty(key)) throw new ArgumentException($"-{parameter} has an empty key; keys are module-name patterns such as 'v_proj'.");
            try
            {
                result[key] = convert(entry.Value!);
            }
            catch (PSInvalidCastException e)
            {
                throw new ArgumentException($"-{parameter} value for '{key}' ('{entry.Value}') is not a {(typeof(T) == typeof(int) ? "whole number" : "number")}.", e);
            }
        }
        return result;
    }
}
