using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Loads a PEFT adapter folder onto a model (PEFT load_adapter).</summary>
/// <remarks>
/// <para>
/// Import-LoraAdapter reads adapter_config.json and adapter_model.safetensors as written by PEFT's save_pretrained or
/// Save-LoraAdapter and attaches the adapter to the model. The first adapter on a model becomes active; later ones
/// start inactive (switch with Set-LoraAdapter). Pickle files (adapter_model.bin) are never read: convert them to
/// safetensors first.
/// </para>
/// <para>
/// Every tensor is checked against the model before anything changes: a missing or unexpected key, a wrong shape
/// or a config that does not fit the model is an error naming the file and key, and leaves the model as it was.
/// Without -Trainable the adapter is loaded for inference (PEFT's default) and never trains.
/// </para>
/// </remarks>
/// <example>Load an adapter
/// <code>Import-LoraAdapter -Model $model -Path ./adapters/stories-r8</code>
/// <para>Attaches the adapter as default and shows its rank, alpha and layer count.</para>
/// </example>
/// <example>Load several adapters under their folder names
/// <code>Get-ChildItem ./adapters -Directory | ForEach-Object { Import-LoraAdapter -Model $model -LiteralPath $_.FullName -Name $_.Name }</code>
/// <para>Each folder becomes an adapter named after it.</para>
/// </example>
[Cmdlet(VerbsData.Import, "LoraAdapter", DefaultParameterSetName = PathSet)]
[OutputType(typeof(LoraAdapterState))]
public sealed class ImportLoraAdapterCommand : AdapterCmdlet
{
    const string PathSet = "Path", LiteralPathSet = "LiteralPath";

    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The adapter folder; wildcards are allowed but must match one folder.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = PathSet, ValueFromPipeline = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>The adapter folder, taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string LiteralPath { get; set; } = "";

    /// <summary>The name to give the adapter; no dots.</summary>
    /// <value>Default: default.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "default";

    /// <summary>Load the adapter for further training (PEFT is_trainable=True) instead of inference only.</summary>
    [Parameter]
    public SwitchParameter Trainable { get; set; }

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        var folder = ResolveSingleExistingFileSystemPath(literal ? LiteralPath : Path, literal);
        if (!Directory.Exists(folder))
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument,
                $"'{folder}' is a file; give the adapter folder that holds adapter_config.json.", folder);
        RunEngine(_ => Model.Adapters.Load(folder, Name, Trainable), folder);
        WriteObject(RunEngine(_ => LoraAdapterState.Of(Model, Name), Model));
    }
}
