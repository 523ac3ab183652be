using System.Management.Automation;
using LoraPS.NotebookRunner.Documents;
using LoraPS.Runner.Hosting;

namespace LoraPS.NotebookRunner.Kernels;

/// <summary>
/// The pwsh kernel: one runspace per notebook with LoraPS imported, hosted exactly as <c>./loraps</c> does
/// (<see cref="LoraSession"/>, with the runner's compatibility functions), so a cell prints what the same script
/// prints there. Output goes through Out-Default into the cell's stdout; errors, warnings and verbose text into its
/// stderr. Any error fails the cell.
/// </summary>
public sealed class PowerShellKernel : ICellKernel
{
    readonly LoraSession _session;
    CellOutputs? _current;

    public PowerShellKernel(string modulePath, string workingDirectory, bool smoke)
    {
        var terminal = new Terminal(new CellStreamWriter(() => _current, "stdout"), new CellStreamWriter(() => _current, "stderr"),
            outIsTerminal: false, errorIsTerminal: false);
        _session = LoraSession.Open(new RunnerHost(terminal), modulePath);
        var state = _session.Runspace.SessionStateProxy;
        state.Path.SetLocation(WildcardPattern.Escape(workingDirectory));
        state.SetVariable("global:LoraSmoke", smoke);
        // Progress lines carry timings: they would make every run's outputs differ. The runner reports per cell instead.
        state.SetVariable("global:ProgressPreference", ActionPreference.SilentlyContinue);
        Notebooks.Notebook.PowerShellVariables = name => state.GetVariable(name) is PSObject o ? o.BaseObject : state.GetVariable(name);
    }

    /// <summary>
    /// The cell is dot-sourced (its variables and functions stay for the next cells) and its output filtered so that
    /// a <see cref="Notebooks.NotebookImage"/> becomes an image output instead of being formatted as text.
    /// </summary>
    public static string Wrap(string code) =>
        ". {" + code + "\n} | & { process { if ($_ -is [LoraPS.Notebooks.NotebookImage]) { [LoraPS.Notebooks.Notebook]::Display($_) } else { $_ } } }";

    public string? Run(string code, CellOutputs outputs)
    {
        _current = outputs;
        try
        {
            int exit = _session.RunCommand(Wrap(code));
            if (exit == 0) return null;
            string errors = outputs.Text("stderr").Trim();
            string message = errors.Length > 0 ? errors : $"The cell ended with exit code {exit}.";
            outputs.Error("PowerShellError", FirstLine(message), message);
            return message;
        }
        finally { _current = null; }
    }

    static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    public void Dispose()
    {
        Notebooks.Notebook.PowerShellVariables = null;
        _session.Dispose();
    }
}
